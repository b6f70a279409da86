// Bindings of the `queue` capability: enqueue jobs of the plugin's own
// `[[job]]` types (or types the operator grants it) and read their status.
// The manifest asks for it with `[capabilities] queue = true`.
//
//   const opts = new EnqueueOptions(); opts.priority = "high"; opts.delayMs = 5000;
//   const job = queue.enqueue("notes.reindex", '{"all":true}', opts);
//   if (!job.ok) return failWith(job.error!);     // FORBIDDEN for a type it may not enqueue, ...
//   // job.value!.id, job.value!.created (false: deduped)
//
// A job handler reads `request().job()` and answers `done()` or
// `jobResult(json)`; an error output (`fail`) is a failed attempt, retried.

import { hostCall } from "./index";
import { JsonObject, JsonValue, parseJson } from "./json";
import { Result, HostError } from "./store";

import { host_queue_enqueue, host_queue_status } from "./contract";

/** How to enqueue; the defaults are the host's (normal priority, now, queue.default_max_retries, no dedupe). */
export class EnqueueOptions {
  /** "critical", "high", "normal" or "low". */
  priority: string = "normal";
  /** Run no earlier than this many milliseconds from now. */
  delayMs: i64 = 0;
  /** -1: the host's default. */
  maxRetries: i32 = -1;
  /** While a job with this key is stored, enqueueing again returns it (`created` false). */
  dedupeKey: string | null = null;
}

export class Enqueued {
  constructor(public id: string, public created: bool) {}
}

/** A job as `queue.status` reports it; `json` is the whole object
 * {"id", "type", "state", "priority", "attempts", ..., "result", "error"}. */
export class JobStatus {
  constructor(public value: JsonValue) {}
  /** "queued", "running", "succeeded", "failed" (a retry is due) or "dead". */
  get state(): string { const v = this.value.getString("state"); return v == null ? "" : v; }
  get attempts(): i64 { const v = this.value.get("attempts"); return v == null ? 0 : <i64>v.num; }
  get json(): string { return this.value.raw; }
}

/** The job of a `job` envelope: see `Request.job()`. */
export class Job {
  constructor(public id: string, public type: string, public payload: JsonValue, public attempt: i64, public priority: string) {}
}

function errorOf(reply: JsonValue | null): HostError | null {
  if (reply == null || !reply.isObject()) return new HostError("INTERNAL", "host reply is not a JSON object");
  const err = reply.get("error");
  if (err == null) return null;
  const code = err.getString("code");
  const message = err.getString("message");
  return new HostError(code == null ? "INTERNAL" : code, message == null ? "" : message);
}

export namespace queue {
  /** Enqueue a job of `type` with `payloadJson` (JSON text). Errors: FORBIDDEN, VALIDATION_FAILED,
   * PAYLOAD_TOO_LARGE, RATE_LIMITED (more than queue.max_enqueues_per_call in one call). */
  export function enqueue(type: string, payloadJson: string = "null", options: EnqueueOptions | null = null): Result<Enqueued | null> {
    const req = new JsonObject().str("type", type).raw("payload", payloadJson);
    if (options != null) {
      req.str("priority", options.priority).int("delay_ms", options.delayMs);
      if (options.maxRetries >= 0) req.int("max_retries", options.maxRetries);
      const key = options.dedupeKey;
      if (key != null) req.str("dedupe_key", key);
    }
    const reply = parseJson(hostCall(host_queue_enqueue, req.toString()));
    const err = errorOf(reply);
    if (err != null) return new Result<Enqueued | null>(null, err);
    const id = reply!.getString("id");
    const created = reply!.get("created");
    if (id == null) return new Result<Enqueued | null>(null, new HostError("INTERNAL", "queue reply without id"));
    return new Result<Enqueued | null>(new Enqueued(id, created == null || created.bool));
  }

  /** The status of a job this plugin enqueued; NOT_FOUND for any other id. */
  export function status(id: string): Result<JobStatus | null> {
    const reply = parseJson(hostCall(host_queue_status, new JsonObject().str("id", id).toString()));
    const err = errorOf(reply);
    if (err != null) return new Result<JobStatus | null>(null, err);
    const job = reply!.get("job");
    if (job == null || !job.isObject()) return new Result<JobStatus | null>(null, new HostError("INTERNAL", "queue reply without job"));
    return new Result<JobStatus | null>(new JobStatus(job));
  }
}
