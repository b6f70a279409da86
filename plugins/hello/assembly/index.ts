// hello: GET /api/v1/hello/{name} -> 200 {"message": "Hello, <name>!"}
import { request, respond, fail, log, Code, JsonObject } from "@arcana/sdk";

export function hello(): i32 {
  const req = request();
  const name = req.param("name");
  if (name == null || name.length == 0) return fail(Code.VALIDATION_FAILED, "path parameter 'name' is required");
  log("debug", "saying hello");
  return respond(200, new JsonObject().str("message", "Hello, " + name + "!").toString());
}
