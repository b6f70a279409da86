//! Bindings of the `store` capability: documents in collections and a
//! key-value space, both scoped to the calling plugin (another plugin's
//! "notes" collection is another collection). The manifest asks for it with
//! `[capabilities] store = true`; the operator grants it.
//!
//! Every call returns `arcana.Result(T)`: `.ok` with the value, or `.err`
//! with the host's error (`NOT_FOUND`, `CONFLICT` on a stale version,
//! `VALIDATION_FAILED`, `PAYLOAD_TOO_LARGE`, `SERVICE_UNAVAILABLE`):
//!
//!     const doc = switch (arcana.store.get(req.arena, "notes", id)) {
//!         .ok => |d| d,
//!         .err => |e| return arcana.failWith(e), // 404 for NOT_FOUND, ...
//!     };
//!     return arcana.respond(200, doc.value);
//!
//! Pass the per-call arena (`req.arena`): results point into it. A document
//! is its body plus `id`, `version`, `created_at` and `updated_at`, which the
//! store keeps (a body may not set them).

const std = @import("std");
const arcana = @import("arcana.zig");

const Allocator = std.mem.Allocator;
const Value = std.json.Value;
const Result = arcana.Result;

/// A stored document: its body and metadata fields, as one JSON object.
pub const Document = struct {
    value: Value,

    pub fn id(self: Document) []const u8 {
        const v = self.value.object.get("id") orelse return "";
        return if (v == .string) v.string else "";
    }
    pub fn version(self: Document) i64 {
        const v = self.value.object.get("version") orelse return 0;
        return if (v == .integer) v.integer else 0;
    }
    /// A body field (or a metadata field).
    pub fn field(self: Document, name: []const u8) ?Value {
        return self.value.object.get(name);
    }
};

/// One page of a query: the documents, the total that matched, and the reply
/// itself (`{"items", "total", "page", "size"}`), ready to respond with.
pub const Page = struct {
    items: []const Document,
    total: i64,
    page: i64,
    size: i64,
    value: Value,
};

pub const Order = enum { asc, desc };

/// Sort and paging of `query`; null leaves the host's default (sort by
/// created_at, page 1, the operator's default page size).
pub const QueryOptions = struct {
    sort: ?[]const u8 = null,
    order: Order = .asc,
    page: ?u32 = null,
    size: ?u32 = null,
};

/// One operation of an atomic `batch`.
pub const Op = union(enum) {
    put: struct { collection: []const u8, doc: Value, id: ?[]const u8 = null, expected_version: ?i64 = null },
    delete: struct { collection: []const u8, id: []const u8, expected_version: ?i64 = null },

    pub fn jsonStringify(self: Op, jw: anytype) !void {
        switch (self) {
            .put => |p| try jw.write(.{ .op = "put", .collection = p.collection, .doc = p.doc, .id = p.id, .expected_version = p.expected_version }),
            .delete => |d| try jw.write(.{ .op = "delete", .collection = d.collection, .id = d.id, .expected_version = d.expected_version }),
        }
    }
};

fn err(code: arcana.Code, message: []const u8) arcana.HostError {
    return .{ .code = code, .message = message };
}

fn document(reply: std.json.ObjectMap) Result(Document) {
    const v = reply.get("doc") orelse return .{ .err = err(.INTERNAL, "store reply without doc") };
    return if (v == .object) .{ .ok = .{ .value = v } } else .{ .err = err(.INTERNAL, "store doc is not an object") };
}

fn int(reply: std.json.ObjectMap, name: []const u8) i64 {
    const v = reply.get(name) orelse return 0;
    return if (v == .integer) v.integer else 0;
}

/// The document `id` of `collection`; `.err` NOT_FOUND when there is none.
pub fn get(arena: Allocator, collection: []const u8, id: []const u8) Result(Document) {
    return switch (arcana.hostRequest(arena, "store_get", .{ .collection = collection, .id = id })) {
        .ok => |reply| document(reply),
        .err => |e| .{ .err = e },
    };
}

/// Create or replace a document; `doc` is any std.json-serializable object.
/// `id` null generates one. `expected_version`: null replaces whatever is
/// there, 0 creates only (CONFLICT if it exists), N replaces only version N
/// (CONFLICT if it moved on, NOT_FOUND if absent). Returns the stored document.
pub fn put(arena: Allocator, collection: []const u8, id: ?[]const u8, doc: anytype, expected_version: ?i64) Result(Document) {
    const req = .{ .collection = collection, .id = id, .doc = arcana.object(doc), .expected_version = expected_version };
    return switch (arcana.hostRequest(arena, "store_put", req)) {
        .ok => |reply| document(reply),
        .err => |e| .{ .err = e },
    };
}

/// Delete a document, only at `expected_version` when given.
pub fn delete(arena: Allocator, collection: []const u8, id: []const u8, expected_version: ?i64) Result(void) {
    const req = .{ .collection = collection, .id = id, .expected_version = expected_version };
    return switch (arcana.hostRequest(arena, "store_delete", req)) {
        .ok => .{ .ok = {} },
        .err => |e| .{ .err = e },
    };
}

/// Documents matching `filter` (a struct such as `.{ .tags = .{ .@"$contains" = "work" } }`,
/// or null for all), sorted and paged. Operators: $eq $gt $gte $lt $lte $in $prefix $contains.
pub fn query(arena: Allocator, collection: []const u8, filter: anytype, options: QueryOptions) Result(Page) {
    const req = .{ .collection = collection, .filter = arcana.object(filter), .sort = options.sort,
                  .order = @tagName(options.order), .page = options.page, .size = options.size };
    const reply = switch (arcana.hostRequest(arena, "store_query", req)) {
        .ok => |r| r,
        .err => |e| return .{ .err = e },
    };
    const raw = reply.get("items") orelse return .{ .err = err(.INTERNAL, "store reply without items") };
    if (raw != .array) return .{ .err = err(.INTERNAL, "store items is not an array") };
    const items = arena.alloc(Document, raw.array.items.len) catch return .{ .err = err(.INTERNAL, "out of memory") };
    for (raw.array.items, items) |v, *d| d.* = .{ .value = v };
    return .{ .ok = .{ .items = items, .total = int(reply, "total"), .page = int(reply, "page"),
                       .size = int(reply, "size"), .value = .{ .object = reply } } };
}

/// Apply all `ops` in one transaction, or none (the first failure is the
/// error, its message prefixed with `ops[i]:`). One result per op, in order:
/// the stored document for a put, null for a delete.
pub fn batch(arena: Allocator, ops: []const Op) Result([]const ?Document) {
    const reply = switch (arcana.hostRequest(arena, "store_batch", .{ .ops = ops })) {
        .ok => |r| r,
        .err => |e| return .{ .err = e },
    };
    const raw = reply.get("results") orelse return .{ .err = err(.INTERNAL, "store reply without results") };
    if (raw != .array) return .{ .err = err(.INTERNAL, "store results is not an array") };
    const out = arena.alloc(?Document, raw.array.items.len) catch return .{ .err = err(.INTERNAL, "out of memory") };
    for (raw.array.items, out) |v, *d| {
        const doc = if (v == .object) v.object.get("doc") else null;
        d.* = if (doc) |value| Document{ .value = value } else null;
    }
    return .{ .ok = out };
}

/// The key-value space: any JSON value per key, optional TTL, atomic counters.
pub const kv = struct {
    /// The value of `key`, or null when it is missing or expired.
    pub fn get(arena: Allocator, key: []const u8) Result(?Value) {
        const reply = switch (arcana.hostRequest(arena, "kv_get", .{ .key = key })) {
            .ok => |r| r,
            .err => |e| return .{ .err = e },
        };
        const found = reply.get("found") orelse Value{ .bool = false };
        if (found != .bool or !found.bool) return .{ .ok = null };
        return .{ .ok = reply.get("value") orelse Value{ .null = {} } };
    }

    /// Set `key` to any std.json-serializable value; `ttl_s` null keeps it forever.
    pub fn set(arena: Allocator, key: []const u8, value: anytype, ttl_s: ?f64) Result(void) {
        return switch (arcana.hostRequest(arena, "kv_set", .{ .key = key, .value = value, .ttl = ttl_s })) {
            .ok => .{ .ok = {} },
            .err => |e| .{ .err = e },
        };
    }

    /// Remove `key`; whether it was there.
    pub fn delete(arena: Allocator, key: []const u8) Result(bool) {
        return switch (arcana.hostRequest(arena, "kv_delete", .{ .key = key })) {
            .ok => |r| .{ .ok = if (r.get("deleted")) |d| d == .bool and d.bool else false },
            .err => |e| .{ .err = e },
        };
    }

    /// Add `by` to the integer at `key` (a missing key counts as 0), atomically
    /// across every instance and process; the new value.
    pub fn incr(arena: Allocator, key: []const u8, by: i64) Result(i64) {
        return switch (arcana.hostRequest(arena, "kv_incr", .{ .key = key, .by = by })) {
            .ok => |r| .{ .ok = int(r, "value") },
            .err => |e| .{ .err = e },
        };
    }
};
