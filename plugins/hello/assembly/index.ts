// hello: GET /api/v1/hello/{name} -> 200 {"message": "Hello, <name>!"},
// and its gRPC twin greeter.v1.Greeter/SayHello {name} -> {message}.
import { request, respond, reply, fail, Code, JsonObject } from "@arcana/sdk";

export function hello(): i32 {
  const req = request();
  let name: string | null = null;
  if (req.kind == "grpc") {
    const message = req.message();
    if (message != null) name = message.getString("name");
  } else {
    name = req.param("name");
  }
  if (name == null || name.length == 0) return fail(Code.VALIDATION_FAILED, "a non-empty 'name' is required");
  const greeting = new JsonObject().str("message", "Hello, " + name + "!").toString();
  return req.kind == "grpc" ? reply(greeting) : respond(200, greeting);
}
