//! Bindings of the `events` capability: emit events on the topics the
//! manifest lists (`[capabilities] events = ["note.*"]`), and read the event
//! a `[[subscribe]]` handler is given.
//!
//!     switch (arcana.events.emit(req.arena, "note.created", .{ .id = doc.id() })) {
//!         .ok => {},
//!         .err => |e| arcana.logFields(.warn, "event not emitted", .{ .reason = e.message }),
//!     }
//!
//! A subscriber (`[[subscribe]] topic = "note.*" handler = "on_note"`) reads
//! `req.event()` and answers `arcana.done()`; an error output is a failed
//! delivery, retried (delivery is at-least-once: the same event id may come
//! again).

const std = @import("std");
const arcana = @import("arcana.zig");

const Allocator = std.mem.Allocator;
const Value = std.json.Value;
const Result = arcana.Result;

/// The event of an `event` envelope (`{"kind": "event", "event": {...}}`): see `Request.event`.
pub const Event = struct {
    id: []const u8,
    topic: []const u8,
    /// "kernel" or the plugin that emitted it.
    source: []const u8,
    /// Seconds since the epoch.
    time: f64,
    payload: Value,
    /// The acting user's id, or null.
    principal: ?[]const u8,
    /// The event object itself, e.g. to store as it came.
    value: Value,
};

/// Emit `topic` with `payload` (a std.json-serializable object; `.{}` for
/// none). The event's source is this plugin and its principal the calling
/// request's user. Errors: FORBIDDEN (a topic the manifest does not list, or
/// a kernel topic: auth., plugin., admin.), VALIDATION_FAILED,
/// PAYLOAD_TOO_LARGE, RATE_LIMITED (`queue.max_enqueues_per_call`).
pub fn emit(arena: Allocator, topic: []const u8, payload: anytype) Result(void) {
    return switch (arcana.hostRequest(arena, "event_emit", .{ .topic = topic, .payload = arcana.object(payload) })) {
        .ok => .{ .ok = {} },
        .err => |e| .{ .err = e },
    };
}
