// Bindings of the `http` capability: outbound HTTP to the hosts the manifest
// lists (`[capabilities] http = ["api.example.com", "*.example.com"]`, and
// the operator grants `http`).
//
//   const opts = new FetchOptions(); opts.headers.set("accept", "application/json"); opts.timeoutMs = 2000;
//   const res = http.fetch("https://api.example.com/v1/items", opts);
//   if (!res.ok) return failWith(res.error!);   // FORBIDDEN, SERVICE_UNAVAILABLE, PLUGIN_TIMEOUT, ...
//   // res.value!.status, res.value!.header("content-type"), res.value!.body
//
// Any status the server answers (404, 500, ...) is ok; an error means no
// answer: a host not granted or an address refused (FORBIDDEN), a bad request
// (VALIDATION_FAILED), a body or headers over the host's bounds
// (PAYLOAD_TOO_LARGE), no answer in time (PLUGIN_TIMEOUT), a host that is
// down or whose circuit breaker is open (SERVICE_UNAVAILABLE), more fetches
// in one call than capabilities.http.max_fetches_per_call (RATE_LIMITED).
// The host retries GET, HEAD, OPTIONS, PUT and DELETE on connection failures
// and 502/503/504, and follows redirects to granted hosts.

import { hostCall } from "./index";
import { JsonObject, JsonValue, parseJson } from "./json";
import { Result, HostError } from "./store";

import { host_http_fetch } from "./contract";

/** How to fetch; the defaults are a GET without body and the host's default_timeout_ms. */
export class FetchOptions {
  /** GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS. */
  method: string = "GET";
  /** Host, Content-Length, Transfer-Encoding, Connection and the like are the host's (VALIDATION_FAILED). */
  headers: Map<string, string> = new Map<string, string>();
  /** A text body (sent as UTF-8), or `bodyBase64` for bytes; not both. */
  body: string | null = null;
  bodyBase64: string | null = null;
  /** The whole fetch, retries and redirects included; 0: the host's default. */
  timeoutMs: i32 = 0;
}

export class HttpResponse {
  constructor(
    public status: i32,
    /** Lower-case header names; a repeated header's values joined with ", ". */
    public headers: JsonValue,
    /** The body when it is UTF-8 text, else null (then `bodyBase64` holds it). */
    public body: string | null,
    public bodyBase64: string | null,
    /** True when the body was longer than capabilities.http.max_response_bytes and was cut there. */
    public truncated: bool,
    /** The URL that answered (the last one after redirects). */
    public url: string,
  ) {}

  header(name: string): string | null { return this.headers.getString(name); }
}

function errorOf(reply: JsonValue | null): HostError | null {
  if (reply == null || !reply.isObject()) return new HostError("INTERNAL", "host reply is not a JSON object");
  const err = reply.get("error");
  if (err == null) return null;
  const code = err.getString("code");
  const message = err.getString("message");
  return new HostError(code == null ? "INTERNAL" : code, message == null ? "" : message);
}

export namespace http {
  /** Fetch `url` (http or https, a granted host); see the module comment for the errors. */
  export function fetch(url: string, options: FetchOptions | null = null): Result<HttpResponse | null> {
    const opts = options == null ? new FetchOptions() : options;
    const headers = new JsonObject();
    const names = opts.headers.keys();
    for (let i = 0; i < names.length; i++) headers.str(names[i], opts.headers.get(names[i]));
    const req = new JsonObject().str("method", opts.method).str("url", url).raw("headers", headers.toString());
    const body = opts.body;
    if (body != null) req.str("body", body);
    const encoded = opts.bodyBase64;
    if (encoded != null) req.str("body_base64", encoded);
    if (opts.timeoutMs > 0) req.int("timeout_ms", opts.timeoutMs);
    const reply = parseJson(hostCall(host_http_fetch, req.toString()));
    const err = errorOf(reply);
    if (err != null) return new Result<HttpResponse | null>(null, err);
    const status = reply!.get("status");
    if (status == null) return new Result<HttpResponse | null>(null, new HostError("INTERNAL", "http reply without status"));
    const got = reply!.get("headers");
    const truncated = reply!.get("truncated");
    const answered = reply!.getString("url");
    return new Result<HttpResponse | null>(new HttpResponse(
      <i32>status.num,
      got == null ? parseJson("{}")! : got,
      reply!.getString("body"),
      reply!.getString("body_base64"),
      truncated != null && truncated.bool,
      answered == null ? url : answered,
    ));
  }
}
