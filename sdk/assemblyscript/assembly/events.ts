// Bindings of the `events` capability: emit events on the topics the manifest
// lists (`[capabilities] events = ["note.*"]`), and the event a
// `[[subscribe]]` handler is given (`request().event()`).
//
//   const sent = events.emit("note.created", new JsonObject().str("id", id).toString());
//   if (!sent.ok) log("warn", "event not emitted: " + sent.error!.message);
//
// A subscriber answers `done()`; an error output is a failed delivery,
// retried (at-least-once: the same event id may come again).

import { hostCall } from "./index";
import { JsonObject, JsonValue, parseJson } from "./json";
import { Result, HostError } from "./store";

import { host_event_emit } from "./contract";

/** The event of an `event` envelope: see `Request.event()`. */
export class Event {
  constructor(
    public id: string,
    public topic: string,
    /** "kernel" or the plugin that emitted it. */
    public source: string,
    /** Seconds since the epoch. */
    public time: f64,
    public payload: JsonValue,
    /** The acting user's id, or null. */
    public principal: string | null,
    /** The whole event object. */
    public value: JsonValue,
  ) {}
}

export namespace events {
  /** Emit `topic` with `payloadJson` (a JSON object). Errors: FORBIDDEN (a topic the manifest does not
   * list, or a kernel topic), VALIDATION_FAILED, PAYLOAD_TOO_LARGE, RATE_LIMITED. */
  export function emit(topic: string, payloadJson: string = "{}"): Result<bool> {
    const reply = parseJson(hostCall(host_event_emit, new JsonObject().str("topic", topic).raw("payload", payloadJson).toString()));
    if (reply == null || !reply.isObject()) return new Result<bool>(false, new HostError("INTERNAL", "host reply is not a JSON object"));
    const err = reply.get("error");
    if (err == null) return new Result<bool>(true);
    const code = err.getString("code");
    const message = err.getString("message");
    return new Result<bool>(false, new HostError(code == null ? "INTERNAL" : code, message == null ? "" : message));
  }
}
