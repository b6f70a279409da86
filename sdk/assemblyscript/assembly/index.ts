// Arcana guest SDK for AssemblyScript (on @extism/as-pdk).
//
//   import { request, respond, jsonString, JsonObject } from "@arcana/sdk";
//
//   export function hello(): i32 {
//     const req = request();
//     const name = req.param("name");
//     return respond(200, new JsonObject().str("message", "Hello, " + (name == null ? "world" : name) + "!").toString());
//   }
//
// Build with `arcana plugin build` (or `asc ... --use abort=~lib/@arcana/sdk/assembly/index/arcanaAbort`).
//
// Host functions live in `extism:host/user` and share one shape:
// (i64 offset of a JSON request) -> i64 offset of a JSON reply. contract.ts
// (generated from the kernel's tables) declares each as `host_<name>`; call
// one with `hostCall(host_kv_get, json)`. AssemblyScript emits an import only
// when it is used, so a plugin imports exactly the host functions it calls.

import { Host, Memory } from "@extism/as-pdk";
import { error_set, length } from "@extism/as-pdk/lib/env";
import { JsonValue, JsonObject, parseJson, jsonString, lastJsonError } from "./json";
import { host_log } from "./contract";
import { Job } from "./queue";
import { Event } from "./events";

export { JsonKind, JsonValue, JsonObject, JsonArray, parseJson, jsonString, lastJsonError } from "./json";
export { store, kv, Result, HostError, Document, Page, QueryOptions, BatchOp, failWith } from "./store";
export { auth } from "./auth";
export { queue, EnqueueOptions, Enqueued, JobStatus, Job } from "./queue";
export { events, Event } from "./events";
export { http, FetchOptions, HttpResponse } from "./http";
export { Router, Handler } from "./router";
// `Code` and every host function (`host_<name>`), generated from the kernel's tables.
export * from "./contract";

// ------------------------------------------------------------------ raw I/O

/** The raw input bytes of this call (the envelope, or the body for raw routes). */
export function inputBytes(): Uint8Array { return Host.input(); }

/** Set the raw output bytes of this call. */
export function outputBytes(bytes: Uint8Array): void { Host.output(bytes); }

/** Set the output to `s` encoded as UTF-8. (as-pdk's outputString uses the
 * UTF-16 length and truncates non-ASCII text, so do not use it.) */
export function outputString(s: string): void {
  Host.output(Uint8Array.wrap(String.UTF8.encode(s)));
}

/** Abort handler: reports the message through Extism's error_set, then traps. */
export function arcanaAbort(message: string | null, fileName: string | null = null, line: u32 = 0, column: u32 = 0): void {
  const text = "abort: " + (message == null ? "" : message) + " at " +
    (fileName == null ? "?" : fileName) + ":" + line.toString() + ":" + column.toString();
  error_set(Memory.allocateString(text).offset);
  unreachable();
}

// ------------------------------------------------------------------ envelope

/** The request envelope of an http/grpc/job/event call (`job()` and `event()` read the last two). */
export class Request {
  /** The whole parsed envelope. */
  root: JsonValue;
  constructor(root: JsonValue) { this.root = root; }

  private text(key: string): string {
    const v = this.root.getString(key);
    return v == null ? "" : v;
  }
  private member(map: string, key: string): JsonValue | null {
    const m = this.root.get(map);
    if (m == null || !m.isObject()) return null;
    return m.get(key);
  }
  private stringMap(map: string): Map<string, string> {
    const out = new Map<string, string>();
    const m = this.root.get(map);
    if (m == null || !m.isObject()) return out;
    for (let i = 0; i < m.keys.length; i++) {
      if (m.values[i].isString()) out.set(m.keys[i], m.values[i].str);
    }
    return out;
  }

  get kind(): string { return this.text("kind"); }
  get method(): string { return this.text("method"); }
  get path(): string { return this.text("path"); }
  get route(): string { return this.text("route"); }
  get requestId(): string { return this.text("request_id"); }
  get traceparent(): string { return this.text("traceparent"); }

  /** Path parameters, e.g. {"name": "bob"} for /hello/{name}. */
  get params(): Map<string, string> { return this.stringMap("params"); }
  /** Request headers (lower-case names). */
  get headers(): Map<string, string> { return this.stringMap("headers"); }
  /** Query parameters; each name maps to all its values. */
  get query(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    const m = this.root.get("query");
    if (m == null || !m.isObject()) return out;
    for (let i = 0; i < m.keys.length; i++) {
      const values: string[] = [];
      const v = m.values[i];
      if (v.isString()) values.push(v.str);
      for (let k = 0; k < v.items.length; k++) if (v.items[k].isString()) values.push(v.items[k].str);
      out.set(m.keys[i], values);
    }
    return out;
  }

  param(name: string): string | null {
    const v = this.member("params", name);
    return v != null && v.isString() ? v.str : null;
  }
  header(name: string): string | null {
    const v = this.member("headers", name.toLowerCase());
    return v != null && v.isString() ? v.str : null;
  }
  /** First value of query parameter `name`. */
  queryParam(name: string): string | null {
    const v = this.member("query", name);
    if (v == null) return null;
    if (v.isString()) return v.str;
    return v.items.length > 0 && v.items[0].isString() ? v.items[0].str : null;
  }

  /** The JSON body as raw JSON text; null when absent or not JSON. */
  get body(): string | null {
    const v = this.bodyValue();
    return v == null ? null : v.raw;
  }
  /** The parsed JSON body; null when absent or not JSON. */
  bodyValue(): JsonValue | null {
    if (this.root.get("body_base64") != null) return null;
    return this.root.get("body");
  }
  /** The base64 body of a non-JSON request, else null. */
  get bodyBase64(): string | null { return this.root.getString("body_base64"); }
  /** The gRPC request message as proto3 JSON (kind "grpc"); null otherwise. */
  message(): JsonValue | null {
    const v = this.root.get("message");
    return v == null || !v.isObject() ? null : v;
  }
  /** gRPC request metadata (lower-case keys). */
  get metadata(): Map<string, string> { return this.stringMap("metadata"); }
  /** The authenticated principal ({"sub", "roles"}), or null. */
  get principal(): JsonValue | null {
    const v = this.root.get("principal");
    return v == null || v.isNull() ? null : v;
  }

  /** The job of a "job" envelope; null for any other kind. */
  job(): Job | null {
    const o = this.kindMember("job");
    if (o == null) return null;
    const payload = o.get("payload");
    return new Job(textOf(o, "id"), textOf(o, "type"), payload == null ? new JsonValue() : payload,
      <i64>numberOf(o, "attempt"), o.getString("priority") == null ? "normal" : o.getString("priority")!);
  }

  /** The event of an "event" envelope; null for any other kind. */
  event(): Event | null {
    const o = this.kindMember("event");
    if (o == null) return null;
    const payload = o.get("payload");
    return new Event(textOf(o, "id"), textOf(o, "topic"), textOf(o, "source"), numberOf(o, "time"),
      payload == null ? new JsonValue() : payload, o.getString("principal"), o);
  }

  private kindMember(kind: string): JsonValue | null {
    if (this.kind != kind) return null;
    const v = this.root.get(kind);
    return v == null || !v.isObject() ? null : v;
  }
}

function textOf(o: JsonValue, key: string): string {
  const v = o.getString(key);
  return v == null ? "" : v;
}

function numberOf(o: JsonValue, key: string): f64 {
  const v = o.get(key);
  return v == null ? 0 : v.num;
}

/** Read and parse this call's envelope (traps if it is not a JSON object). */
export function request(): Request {
  const root = parseJson(String.UTF8.decode(Host.input().buffer));
  if (root == null || !root.isObject()) {
    arcanaAbort("arcana: the input envelope is not a JSON object: " + lastJsonError());
    unreachable();
  }
  return new Request(root!);
}

// ------------------------------------------------------------------ output

/**
 * Output {"status", "headers", "body"}; `bodyJson` is JSON text. Returns 0.
 * A 204 or 304 answer has no body in HTTP: `bodyJson` is left out for them (pass "").
 */
export function respond(status: i32, bodyJson: string, headers: Map<string, string> | null = null): i32 {
  const h = new JsonObject();
  if (headers != null) {
    const keys = headers.keys();
    for (let i = 0; i < keys.length; i++) h.str(keys[i], headers.get(keys[i]));
  }
  const out = new JsonObject().int("status", status).raw("headers", h.toString());
  if (status != 204 && status != 304) out.raw("body", bodyJson);
  outputString(out.toString());
  return 0;
}

/** Output a gRPC reply {"message": ...}; `messageJson` is proto3 JSON text of the output type. Returns 0. */
export function reply(messageJson: string): i32 {
  outputString(new JsonObject().raw("message", messageJson).toString());
  return 0;
}

/** Output {}: a job or an event handled. Returns 0. */
export function done(): i32 {
  outputString("{}");
  return 0;
}

/** Output {"result": <resultJson>}: a job handled, its result kept for `queue.status`. Returns 0. */
export function jobResult(resultJson: string): i32 {
  outputString(new JsonObject().raw("result", resultJson).toString());
  return 0;
}

/** Output {"error": {"code", "message"}} (see `Code`). Returns 0. */
export function fail(code: string, message: string): i32 {
  const err = new JsonObject().str("code", code).str("message", message);
  outputString(new JsonObject().raw("error", err.toString()).toString());
  return 0;
}

// ------------------------------------------------------------------ host API

/** The reply `hostCall` gives when the host answers with no reply at all
 * (offset 0: it could not allocate one, or its dispatch failed). */
export const HOST_CALL_FAILED = "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"host call failed\"}}";

/** Call a host function (`host_<name>` from contract.ts, or one declared
 * `@external("extism:host/user", name)`) with a JSON request; returns its JSON
 * reply. Failures come back as {"error": {"code", "message"}}; when the host
 * gives no reply at all, that is `HOST_CALL_FAILED` (INTERNAL), never "{}". */
export function hostCall(fn: (offset: u64) => u64, requestJson: string): string {
  const req = Memory.allocateString(requestJson);
  const replyOffset = fn(req.offset);
  req.free();
  if (replyOffset == 0) return HOST_CALL_FAILED;
  const reply = new Memory(replyOffset, length(replyOffset));
  const text = reply.toString();
  reply.free();
  return text;
}

/** Log through the host (`log` capability). `fieldsJson` is a JSON object. */
export function log(level: string, message: string, fieldsJson: string = "{}"): void {
  const req = new JsonObject().str("level", level).str("message", message).raw("fields", fieldsJson);
  hostCall(host_log, req.toString());
}
