// Bindings of the `store` capability: documents in collections and a
// key-value space, both scoped to the calling plugin. The manifest asks for it
// with `[capabilities] store = true`; the operator grants it.
//
// Every call returns a `Result<T>`: `value` when `ok`, else `error` (code and
// message from the host: NOT_FOUND, CONFLICT on a stale version,
// VALIDATION_FAILED, PAYLOAD_TOO_LARGE, SERVICE_UNAVAILABLE). Nothing traps:
//
//   const got = store.get("notes", id);
//   if (!got.ok) return failWith(got.error!);      // 404 for NOT_FOUND, ...
//   return respond(200, got.value!.json);
//
// A document is its body plus `id`, `version`, `created_at` and `updated_at`,
// which the store keeps (a body may not set them). Bodies, filters and values
// are JSON text: build them with `JsonObject` or `jsonString`.

import { hostCall, fail } from "./index";
import { JsonValue, JsonObject, parseJson } from "./json";

import {
  host_store_get, host_store_put, host_store_delete, host_store_query, host_store_batch,
  host_kv_get, host_kv_set, host_kv_delete, host_kv_incr,
} from "./contract";

/** The error a host function answered with. */
export class HostError {
  constructor(public code: string, public message: string) {}
}

/** The outcome of a host call: `value` when `ok`, else `error`. */
export class Result<T> {
  constructor(public value: T, public error: HostError | null = null) {}
  get ok(): bool { return this.error == null; }
}

/** Output a host error as this handler's own error (same code and message). Returns 0. */
export function failWith(error: HostError): i32 {
  return fail(error.code, error.message);
}

function failed<T>(error: HostError): Result<T> {
  if (isReference<T>()) return new Result<T>(changetype<T>(0), error);
  return new Result<T>(<T>0, error);
}

/** A stored document: body and metadata fields in one JSON object. */
export class Document {
  constructor(public value: JsonValue) {}
  get id(): string { const v = this.value.getString("id"); return v == null ? "" : v; }
  get version(): i64 { const v = this.value.get("version"); return v == null ? 0 : <i64>v.num; }
  get createdAt(): string { const v = this.value.getString("created_at"); return v == null ? "" : v; }
  get updatedAt(): string { const v = this.value.getString("updated_at"); return v == null ? "" : v; }
  /** The document as JSON text, ready to respond with. */
  get json(): string { return this.value.raw; }
}

/** One page of a query; `json` is the whole reply {"items", "total", "page", "size"}. */
export class Page {
  constructor(public items: Document[], public total: i64, public page: i64, public size: i64, public json: string) {}
}

/** Sort and paging of `store.query`; empty/0 leaves the host's default. */
export class QueryOptions {
  sort: string = "";
  descending: bool = false;
  page: i32 = 0;
  size: i32 = 0;
}

/** One operation of an atomic `store.batch`. */
export class BatchOp {
  private constructor(public json: string) {}
  static put(collection: string, docJson: string, id: string | null = null, expectedVersion: i64 = -1): BatchOp {
    return new BatchOp(docRequest(collection, id, expectedVersion).str("op", "put").raw("doc", docJson).toString());
  }
  static remove(collection: string, id: string, expectedVersion: i64 = -1): BatchOp {
    return new BatchOp(docRequest(collection, id, expectedVersion).str("op", "delete").toString());
  }
}

function docRequest(collection: string, id: string | null, expectedVersion: i64): JsonObject {
  const req = new JsonObject().str("collection", collection);
  if (id != null) req.str("id", id);
  if (expectedVersion >= 0) req.int("expected_version", expectedVersion);
  return req;
}

/** Call a host function; its parsed reply object, or its error. */
function call(fn: (offset: u64) => u64, requestJson: string): Result<JsonValue | null> {
  const reply = parseJson(hostCall(fn, requestJson));
  if (reply == null || !reply.isObject()) return failed<JsonValue | null>(new HostError("INTERNAL", "host reply is not a JSON object"));
  const err = reply.get("error");
  if (err == null) return new Result<JsonValue | null>(reply);
  const code = err.getString("code");
  const message = err.getString("message");
  return failed<JsonValue | null>(new HostError(code == null ? "INTERNAL" : code, message == null ? "" : message));
}

function documentOf(reply: Result<JsonValue | null>): Result<Document | null> {
  if (!reply.ok) return failed<Document | null>(reply.error!);
  const doc = reply.value!.get("doc");
  if (doc == null) return failed<Document | null>(new HostError("INTERNAL", "store reply without doc"));
  return new Result<Document | null>(new Document(doc));
}

export namespace store {
  /** The document `id` of `collection` (NOT_FOUND when there is none). */
  export function get(collection: string, id: string): Result<Document | null> {
    return documentOf(call(host_store_get, docRequest(collection, id, -1).toString()));
  }

  /** Create or replace; `id` null generates one; `expectedVersion` -1 replaces
   * whatever is there, 0 creates only, N replaces only version N (CONFLICT otherwise). */
  export function put(collection: string, docJson: string, id: string | null = null, expectedVersion: i64 = -1): Result<Document | null> {
    return documentOf(call(host_store_put, docRequest(collection, id, expectedVersion).raw("doc", docJson).toString()));
  }

  /** Delete a document, only at `expectedVersion` when it is >= 0. */
  export function remove(collection: string, id: string, expectedVersion: i64 = -1): Result<bool> {
    const reply = call(host_store_delete, docRequest(collection, id, expectedVersion).toString());
    return reply.ok ? new Result<bool>(true) : failed<bool>(reply.error!);
  }

  /** Documents matching `filterJson` (e.g. {"tags": {"$contains": "work"}}; null for all). */
  export function query(collection: string, filterJson: string | null = null, options: QueryOptions | null = null): Result<Page | null> {
    const req = new JsonObject().str("collection", collection);
    if (filterJson != null) req.raw("filter", filterJson);
    if (options != null) {
      if (options.sort.length > 0) req.str("sort", options.sort);
      req.str("order", options.descending ? "desc" : "asc");
      if (options.page > 0) req.int("page", options.page);
      if (options.size > 0) req.int("size", options.size);
    }
    const reply = call(host_store_query, req.toString());
    if (!reply.ok) return failed<Page | null>(reply.error!);
    const body = reply.value!;
    const raw = body.get("items");
    const items: Document[] = [];
    if (raw != null) for (let i = 0; i < raw.items.length; i++) items.push(new Document(raw.items[i]));
    return new Result<Page | null>(new Page(items, number(body, "total"), number(body, "page"), number(body, "size"), body.raw));
  }

  /** Apply every op in one transaction, or none (the error names `ops[i]`).
   * One result per op: the stored document for a put, null for a delete. */
  export function batch(ops: BatchOp[]): Result<Array<Document | null> | null> {
    const parts: string[] = [];
    for (let i = 0; i < ops.length; i++) parts.push(ops[i].json);
    const reply = call(host_store_batch, new JsonObject().raw("ops", "[" + parts.join(",") + "]").toString());
    if (!reply.ok) return failed<Array<Document | null> | null>(reply.error!);
    const out = new Array<Document | null>();
    const results = reply.value!.get("results");
    if (results != null) {
      for (let i = 0; i < results.items.length; i++) {
        const doc = results.items[i].get("doc");
        out.push(doc == null ? null : new Document(doc));
      }
    }
    return new Result<Array<Document | null> | null>(out);
  }
}

export namespace kv {
  /** The value of `key`; null when it is missing or expired. */
  export function get(key: string): Result<JsonValue | null> {
    const reply = call(host_kv_get, new JsonObject().str("key", key).toString());
    if (!reply.ok) return reply;
    const found = reply.value!.get("found");
    if (found == null || !found.bool) return new Result<JsonValue | null>(null);
    return new Result<JsonValue | null>(reply.value!.get("value"));
  }

  /** Set `key` to a JSON value; `ttlSeconds` 0 keeps it forever. */
  export function set(key: string, valueJson: string, ttlSeconds: f64 = 0): Result<bool> {
    const req = new JsonObject().str("key", key).raw("value", valueJson);
    if (ttlSeconds > 0) req.num("ttl", ttlSeconds);
    const reply = call(host_kv_set, req.toString());
    return reply.ok ? new Result<bool>(true) : failed<bool>(reply.error!);
  }

  /** Remove `key`; whether it was there. */
  export function remove(key: string): Result<bool> {
    const reply = call(host_kv_delete, new JsonObject().str("key", key).toString());
    if (!reply.ok) return failed<bool>(reply.error!);
    const deleted = reply.value!.get("deleted");
    return new Result<bool>(deleted != null && deleted.bool);
  }

  /** Add `by` to the integer at `key` (missing counts as 0), atomically; the new value. */
  export function incr(key: string, by: i64 = 1): Result<i64> {
    const reply = call(host_kv_incr, new JsonObject().str("key", key).int("by", by).toString());
    return reply.ok ? new Result<i64>(number(reply.value!, "value")) : failed<i64>(reply.error!);
  }
}

function number(o: JsonValue, key: string): i64 {
  const v = o.get(key);
  return v == null ? 0 : <i64>v.num;
}
