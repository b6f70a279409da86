// The router: one export serving several `[[route]]`s of plugin.toml.
//
//   export function api(): i32 {
//     return new Router()
//       .get("/api/v1/notes/{id}", getNote)
//       .put("/api/v1/notes/{id}", putNote)
//       .post("/api/v1/notes", createNote)
//       .serve();
//   }
//   function getNote(req: Request): i32 { ... }
//
// The kernel matches the path and hands over the envelope with `method` and
// `route` (the matched path template, as written in the manifest); the router
// calls the handler whose method and template equal them (exact strings). A
// template registered for other methods only answers METHOD_NOT_ALLOWED
// (naming them), anything else NOT_FOUND. Handlers are top-level functions
// (AssemblyScript has no closures).
import { Request, request, fail } from "./index";
import { Code } from "./contract";

/** A route handler: gets the parsed envelope, answers like any handler (0). */
export type Handler = (req: Request) => i32;

export class Router {
  private methods: string[] = [];
  private routes: string[] = [];
  private handlers: Handler[] = [];

  /** Serve `method` ("GET", "POST", ... as in plugin.toml) on path template `route`. */
  on(method: string, route: string, handler: Handler): Router {
    this.methods.push(method);
    this.routes.push(route);
    this.handlers.push(handler);
    return this;
  }
  get(route: string, handler: Handler): Router { return this.on("GET", route, handler); }
  post(route: string, handler: Handler): Router { return this.on("POST", route, handler); }
  put(route: string, handler: Handler): Router { return this.on("PUT", route, handler); }
  patch(route: string, handler: Handler): Router { return this.on("PATCH", route, handler); }
  /** DELETE (`delete` is a reserved word). */
  remove(route: string, handler: Handler): Router { return this.on("DELETE", route, handler); }

  /** Call the matching handler for `req`; METHOD_NOT_ALLOWED or NOT_FOUND when none matches. */
  dispatch(req: Request): i32 {
    const method = req.method;
    const route = req.route;
    const allowed: string[] = [];
    for (let i = 0; i < this.routes.length; i++) {
      if (this.routes[i] != route) continue;
      if (this.methods[i] == method) {
        const handler = this.handlers[i];
        return handler(req);
      }
      allowed.push(this.methods[i]);
    }
    if (allowed.length > 0) {
      return fail(Code.METHOD_NOT_ALLOWED, method + " is not allowed on " + route + " (allowed: " + allowed.join(", ") + ")");
    }
    if (route.length == 0) return fail(Code.NOT_FOUND, req.kind + " (no route: not an http envelope): no handler in this plugin's router");
    return fail(Code.NOT_FOUND, method + " " + route + ": no handler in this plugin's router");
  }

  /** Read this call's envelope and dispatch it: the body of the export. */
  serve(): i32 { return this.dispatch(request()); }
}
