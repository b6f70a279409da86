//! audit-log: an append-only trail of every event, kept in the store
//! (collection "audit", one document per event, its id the event's id).
//!
//!   [[subscribe]] topic = "*"  -> on_event: records {topic, source, principal, time, payload}
//!   GET /api/v1/audit?topic=&principal=&since=&until=&page=&size=    (role admin)
//!       -> {"items", "total", "page", "size"}, newest first
//!
//! Delivery is at-least-once, so the same event may arrive twice: the entry
//! is created only if absent (expected version 0), and a CONFLICT means it
//! is already recorded. Nothing here ever updates or deletes an entry.
//! `topic` filters on one topic, or on a prefix when it ends in `*`
//! (`note.*`); `since` and `until` bound the event time, inclusive.
const std = @import("std");
const arcana = @import("arcana");

const COLLECTION = "audit";

/// What is stored per event (the document id is the event id).
const Entry = struct {
    topic: []const u8,
    source: []const u8,
    principal: ?[]const u8,
    time: f64,
    payload: std.json.Value,
};

export fn on_event() i32 {
    return arcana.run(record);
}

export fn list_audit() i32 {
    return arcana.run(list);
}

fn record(req: *arcana.Request) !i32 {
    const event = req.event() orelse return arcana.fail(.VALIDATION_FAILED, "on_event takes an event envelope");
    if (event.id.len == 0 or event.topic.len == 0) return arcana.fail(.VALIDATION_FAILED, "the event has no id or topic");
    const entry: Entry = .{ .topic = event.topic, .source = event.source, .principal = event.principal,
                            .time = event.time, .payload = event.payload };
    return switch (arcana.store.put(req.arena, COLLECTION, event.id, entry, 0)) {
        .ok => arcana.done(),
        // Recorded by an earlier delivery of the same event: nothing to do.
        .err => |e| if (e.code == .CONFLICT) arcana.done() else arcana.failWith(e),
    };
}

fn list(req: *arcana.Request) !i32 {
    var filter: std.json.ObjectMap = .empty;
    if (req.query("topic")) |topic| {
        if (std.mem.endsWith(u8, topic, "*")) {
            try filter.put(req.arena, "topic", try operator(req.arena, "$prefix", .{ .string = topic[0 .. topic.len - 1] }));
        } else try filter.put(req.arena, "topic", .{ .string = topic });
    }
    if (req.query("principal")) |principal| try filter.put(req.arena, "principal", .{ .string = principal });
    var time: std.json.ObjectMap = .empty;
    if (req.query("since")) |since| try time.put(req.arena, "$gte", .{ .float = seconds(since) orelse return badTime("since") });
    if (req.query("until")) |until| try time.put(req.arena, "$lte", .{ .float = seconds(until) orelse return badTime("until") });
    if (time.count() > 0) try filter.put(req.arena, "time", .{ .object = time });
    const options: arcana.store.QueryOptions = .{
        .sort = "time", .order = .desc,
        .page = number(req.query("page")) catch return arcana.fail(.VALIDATION_FAILED, "page must be a positive integer"),
        .size = number(req.query("size")) catch return arcana.fail(.VALIDATION_FAILED, "size must be a positive integer"),
    };
    return switch (arcana.store.query(req.arena, COLLECTION, std.json.Value{ .object = filter }, options)) {
        .ok => |page| arcana.respond(200, page.value),
        .err => |e| arcana.failWith(e),
    };
}

fn operator(arena: std.mem.Allocator, name: []const u8, value: std.json.Value) !std.json.Value {
    var o: std.json.ObjectMap = .empty;
    try o.put(arena, name, value);
    return .{ .object = o };
}

fn badTime(name: []const u8) i32 {
    return arcana.failFmt(.VALIDATION_FAILED, "{s} must be a time in seconds since the epoch, e.g. 1767225600", .{name});
}

/// Seconds since the epoch, whole or decimal; null when it is not a finite number.
fn seconds(text: []const u8) ?f64 {
    const v = std.fmt.parseFloat(f64, text) catch return null;
    return if (std.math.isFinite(v)) v else null;
}

fn number(text: ?[]const u8) !?u32 {
    const t = text orelse return null;
    const n = try std.fmt.parseInt(u32, t, 10);
    return if (n == 0) error.Zero else n;
}
