//! Bindings of the `queue` capability: enqueue jobs of the plugin's own
//! `[[job]]` types (or types the operator grants it) and read their status.
//! The manifest asks for it with `[capabilities] queue = true`.
//!
//!     const job = switch (arcana.queue.enqueue(req.arena, "notes.reindex", .{ .all = true },
//!                                              .{ .priority = .high, .delay_ms = 5000 })) {
//!         .ok => |j| j,                        // j.id, j.created (false: deduped)
//!         .err => |e| return arcana.failWith(e), // FORBIDDEN for a type it may not enqueue, ...
//!     };
//!
//! A job handler (`[[job]] type = "notes.reindex" handler = "reindex"`) reads
//! its job from the envelope and answers `arcana.done()` or
//! `arcana.jobResult(value)`; an error output (`arcana.fail`) is a failed
//! attempt, retried with backoff:
//!
//!     fn reindex(req: *arcana.Request) !i32 {
//!         const job = req.job() orelse return arcana.fail(.VALIDATION_FAILED, "not a job");
//!         ...
//!         return arcana.jobResult(.{ .indexed = n });
//!     }

const std = @import("std");
const arcana = @import("arcana.zig");

const Allocator = std.mem.Allocator;
const Value = std.json.Value;
const Result = arcana.Result;

pub const Priority = enum { critical, high, normal, low };

/// How to enqueue; the defaults are the host's (normal priority, now,
/// `queue.default_max_retries`, no dedupe).
pub const Options = struct {
    priority: Priority = .normal,
    /// Run no earlier than this many milliseconds from now (at most `queue.max_delay_s`).
    delay_ms: u64 = 0,
    max_retries: ?u32 = null,
    /// While a job with this key is stored, enqueueing again returns it (`created = false`).
    dedupe_key: ?[]const u8 = null,
};

pub const Enqueued = struct {
    id: []const u8,
    /// False when `dedupe_key` matched a job already stored (its id is `id`).
    created: bool,
};

/// A job as `status` reports it: `{"id", "type", "state", "priority",
/// "attempts", "max_retries", "run_at", "created_at", "updated_at",
/// "finished_at", "owner", "target", "result", "error"}`.
pub const Status = struct {
    value: Value,

    fn text(self: Status, name: []const u8) []const u8 {
        const v = self.value.object.get(name) orelse return "";
        return if (v == .string) v.string else "";
    }
    /// "queued", "running", "succeeded", "failed" (a retry is due) or "dead".
    pub fn state(self: Status) []const u8 {
        return self.text("state");
    }
    pub fn attempts(self: Status) i64 {
        const v = self.value.object.get("attempts") orelse return 0;
        return if (v == .integer) v.integer else 0;
    }
    /// The handler's result once succeeded (null before).
    pub fn result(self: Status) ?Value {
        return self.value.object.get("result");
    }
    /// The last error once an attempt failed.
    pub fn lastError(self: Status) ?[]const u8 {
        const v = self.value.object.get("error") orelse return null;
        return if (v == .string) v.string else null;
    }
};

/// The job of a `job` envelope (`{"kind": "job", "job": {...}}`): see `Request.job`.
pub const Job = struct {
    id: []const u8,
    type: []const u8,
    payload: Value,
    /// 1 on the first attempt, 2 on the first retry, ...
    attempt: i64,
    priority: []const u8,
};

fn fail(message: []const u8) arcana.HostError {
    return .{ .code = .INTERNAL, .message = message };
}

/// Enqueue a job of `job_type` with `payload` (any std.json-serializable
/// value, `null` for none). Errors: FORBIDDEN (not a type this plugin may
/// enqueue), VALIDATION_FAILED, PAYLOAD_TOO_LARGE (`queue.max_payload_bytes`),
/// RATE_LIMITED (more than `queue.max_enqueues_per_call` in one call).
pub fn enqueue(arena: Allocator, job_type: []const u8, payload: anytype, options: Options) Result(Enqueued) {
    const req = .{ .type = job_type, .payload = arcana.object(payload), .priority = @tagName(options.priority),
                   .delay_ms = options.delay_ms, .max_retries = options.max_retries, .dedupe_key = options.dedupe_key };
    const reply = switch (arcana.hostRequest(arena, "queue_enqueue", req)) {
        .ok => |r| r,
        .err => |e| return .{ .err = e },
    };
    const id = reply.get("id") orelse return .{ .err = fail("queue reply without id") };
    const created = reply.get("created") orelse Value{ .bool = true };
    if (id != .string) return .{ .err = fail("queue id is not a string") };
    return .{ .ok = .{ .id = id.string, .created = created == .bool and created.bool } };
}

/// The status of a job this plugin enqueued; NOT_FOUND for any other id.
pub fn status(arena: Allocator, id: []const u8) Result(Status) {
    const reply = switch (arcana.hostRequest(arena, "queue_status", .{ .id = id })) {
        .ok => |r| r,
        .err => |e| return .{ .err = e },
    };
    const job = reply.get("job") orelse return .{ .err = fail("queue reply without job") };
    return if (job == .object) .{ .ok = .{ .value = job } } else .{ .err = fail("queue job is not an object") };
}
