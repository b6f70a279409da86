//! echo: POST /api/v1/echo -> 200 {"echo": <the request's JSON body>}.
const arcana = @import("arcana");

export fn echo() i32 {
    return arcana.run(handle);
}

fn handle(req: *arcana.Request) !i32 {
    const body = req.body() orelse
        return arcana.fail(.VALIDATION_FAILED, "echo needs a JSON request body (send Content-Type: application/json)");
    arcana.log(.debug, "echoing request body");
    return arcana.respond(200, .{ .echo = body });
}
