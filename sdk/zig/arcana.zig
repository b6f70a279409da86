//! Arcana guest SDK for Zig, written directly on the Extism kernel ABI.
//!
//! A handler is an exported `fn () i32`. It reads one JSON envelope from the
//! Extism input (kind http, grpc, job or event), sets one JSON object as the
//! output, and returns 0:
//!
//!     const std = @import("std");
//!     const arcana = @import("arcana.zig");
//!
//!     export fn hello() i32 {
//!         return arcana.run(helloImpl);
//!     }
//!
//!     fn helloImpl(req: *arcana.Request) !i32 {
//!         const name = req.param("name") orelse return arcana.fail(.VALIDATION_FAILED, "name missing");
//!         return arcana.respond(200, .{ .message = name });
//!     }
//!
//! Host functions live in the `extism:host/user` namespace and all share one
//! shape: `(i64 offset of a JSON request) -> i64 offset of a JSON reply`.
//! `hostCall("name", json)` calls any of them; a binding such as `log` below
//! is a few lines on top of it. An import is only emitted when it is used, so
//! a plugin imports exactly the host functions it calls (the kernel refuses
//! imports whose capability was not granted).
//!
//! Memory comes from `std.heap.wasm_allocator` through a per-call arena;
//! every handler call runs on a fresh instance or is short-lived, so the
//! arena is simply freed at the end of `run`.

const std = @import("std");

/// Offset of a block in Extism kernel memory (an `i64` on the wire).
pub const Offset = u64;

/// The raw Extism kernel ABI (`extism:host/env`). Exposed for advanced use.
pub const env = struct {
    pub extern "extism:host/env" fn input_length() u64;
    pub extern "extism:host/env" fn input_load_u8(offset: u64) u8;
    pub extern "extism:host/env" fn input_load_u64(offset: u64) u64;
    pub extern "extism:host/env" fn alloc(size: u64) Offset;
    pub extern "extism:host/env" fn free(offset: Offset) void;
    pub extern "extism:host/env" fn length(offset: Offset) u64;
    pub extern "extism:host/env" fn load_u8(offset: Offset) u8;
    pub extern "extism:host/env" fn load_u64(offset: Offset) u64;
    pub extern "extism:host/env" fn store_u8(offset: Offset, value: u8) void;
    pub extern "extism:host/env" fn store_u64(offset: Offset, value: u64) void;
    pub extern "extism:host/env" fn output_set(offset: Offset, len: u64) void;
    pub extern "extism:host/env" fn error_set(offset: Offset) void;
};

/// Signature shared by every Arcana host function.
pub const HostFn = fn (Offset) callconv(.c) Offset;

/// Allocator backed by wasm linear memory.
pub const allocator: std.mem.Allocator = std.heap.wasm_allocator;

/// The kernel contract (generated from the kernel's tables: see contract.zig).
const contract = @import("contract.zig");

/// Error codes of the Arcana error model: every public code of the kernel.
pub const Code = contract.Code;

/// The host functions of this kernel (names for `hostCall`).
pub const HostFunction = contract.HostFunction;

/// The reply `hostCall` gives when the host answers with no reply at all
/// (offset 0: it could not allocate one, or its dispatch failed).
pub const host_call_failed = "{\"error\":{\"code\":\"INTERNAL\",\"message\":\"host call failed\"}}";

/// Log levels accepted by the `log` host function.
pub const Level = enum { debug, info, warn, @"error" };

// ---------------------------------------------------------------- memory

/// Copy `bytes` into a fresh Extism memory block and return its offset.
pub fn storeBlock(bytes: []const u8) Offset {
    const off = env.alloc(bytes.len);
    var i: usize = 0;
    while (i + 8 <= bytes.len) : (i += 8) {
        env.store_u64(off + i, std.mem.readInt(u64, bytes[i..][0..8], .little));
    }
    while (i < bytes.len) : (i += 1) env.store_u8(off + i, bytes[i]);
    return off;
}

/// Copy the Extism memory block at `off` into guest memory (caller owns it).
pub fn loadBlock(alloc_: std.mem.Allocator, off: Offset) ![]u8 {
    const len: usize = @intCast(env.length(off));
    const buf = try alloc_.alloc(u8, len);
    var i: usize = 0;
    while (i + 8 <= len) : (i += 8) {
        std.mem.writeInt(u64, buf[i..][0..8], env.load_u64(off + i), .little);
    }
    while (i < len) : (i += 1) buf[i] = env.load_u8(off + i);
    return buf;
}

/// The raw input bytes of this call (the JSON envelope, or the body for raw routes).
pub fn input(alloc_: std.mem.Allocator) ![]u8 {
    const len: usize = @intCast(env.input_length());
    const buf = try alloc_.alloc(u8, len);
    var i: usize = 0;
    while (i + 8 <= len) : (i += 8) {
        std.mem.writeInt(u64, buf[i..][0..8], env.input_load_u64(i), .little);
    }
    while (i < len) : (i += 1) buf[i] = env.input_load_u8(i);
    return buf;
}

/// Set the raw output bytes of this call.
pub fn output(bytes: []const u8) void {
    env.output_set(storeBlock(bytes), bytes.len);
}

// ---------------------------------------------------------------- envelope

/// The parsed request envelope. All slices live in the per-call arena.
pub const Request = struct {
    arena: std.mem.Allocator,
    raw: []const u8,
    root: std.json.ObjectMap,

    fn str(self: *const Request, key: []const u8) []const u8 {
        const v = self.root.get(key) orelse return "";
        return if (v == .string) v.string else "";
    }

    fn mapGet(self: *const Request, map: []const u8, key: []const u8) ?std.json.Value {
        const m = self.root.get(map) orelse return null;
        if (m != .object) return null;
        return m.object.get(key);
    }

    /// "http", "grpc", "job" or "event".
    pub fn kind(self: *const Request) []const u8 {
        return self.str("kind");
    }
    pub fn method(self: *const Request) []const u8 {
        return self.str("method");
    }
    pub fn path(self: *const Request) []const u8 {
        return self.str("path");
    }
    /// The matched `[[route]]` path template, e.g. "/api/v1/notes/{id}" (what `dispatch` matches on).
    pub fn route(self: *const Request) []const u8 {
        return self.str("route");
    }
    /// A path parameter such as `{name}`.
    pub fn param(self: *const Request, name: []const u8) ?[]const u8 {
        const v = self.mapGet("params", name) orelse return null;
        return if (v == .string) v.string else null;
    }
    /// The first value of a query parameter.
    pub fn query(self: *const Request, name: []const u8) ?[]const u8 {
        const v = self.mapGet("query", name) orelse return null;
        if (v == .string) return v.string;
        if (v == .array and v.array.items.len > 0 and v.array.items[0] == .string) return v.array.items[0].string;
        return null;
    }
    /// A request header (names are lower-case in the envelope).
    pub fn header(self: *const Request, name: []const u8) ?[]const u8 {
        const v = self.mapGet("headers", name) orelse return null;
        return if (v == .string) v.string else null;
    }
    /// The JSON body, or null when absent or when the body was not JSON
    /// (then `body_base64` is set instead).
    pub fn body(self: *const Request) ?std.json.Value {
        if (self.root.get("body_base64") != null) return null;
        return self.root.get("body");
    }
    /// The request message of a `grpc` envelope (proto3 JSON: int64 fields arrive as strings,
    /// fields at their zero value are left out); null for any other kind.
    pub fn message(self: *const Request) ?std.json.ObjectMap {
        if (!std.mem.eql(u8, self.kind(), "grpc")) return null;
        const v = self.root.get("message") orelse return null;
        return if (v == .object) v.object else null;
    }
    /// A gRPC metadata value (names are lower-case); null when absent.
    pub fn metadata(self: *const Request, name: []const u8) ?[]const u8 {
        const v = self.mapGet("metadata", name) orelse return null;
        return if (v == .string) v.string else null;
    }
    /// Any top-level envelope field (principal, job, event, message, ...).
    pub fn field(self: *const Request, name: []const u8) ?std.json.Value {
        return self.root.get(name);
    }
    /// The `request_id` of this call (for a job or an event: of its delivery).
    pub fn requestId(self: *const Request) []const u8 {
        return self.str("request_id");
    }
    /// The W3C trace context this call continues ("" when none).
    pub fn traceparent(self: *const Request) []const u8 {
        return self.str("traceparent");
    }
    /// The job of a `job` envelope; null for any other kind.
    pub fn job(self: *const Request) ?queue.Job {
        const o = self.member("job") orelse return null;
        return .{
            .id = text(o, "id") orelse "",
            .type = text(o, "type") orelse "",
            .payload = o.get("payload") orelse .{ .null = {} },
            .attempt = if (o.get("attempt")) |a| (if (a == .integer) a.integer else 0) else 0,
            .priority = text(o, "priority") orelse "normal",
        };
    }
    /// The event of an `event` envelope; null for any other kind.
    pub fn event(self: *const Request) ?events.Event {
        const o = self.member("event") orelse return null;
        const time: f64 = if (o.get("time")) |t| switch (t) {
            .float => t.float,
            .integer => @floatFromInt(t.integer),
            else => 0,
        } else 0;
        return .{
            .id = text(o, "id") orelse "",
            .topic = text(o, "topic") orelse "",
            .source = text(o, "source") orelse "",
            .time = time,
            .payload = o.get("payload") orelse .{ .null = {} },
            .principal = text(o, "principal"),
            .value = self.root.get("event").?,
        };
    }

    fn member(self: *const Request, name: []const u8) ?std.json.ObjectMap {
        if (!std.mem.eql(u8, self.kind(), name)) return null;
        const v = self.root.get(name) orelse return null;
        return if (v == .object) v.object else null;
    }

    fn text(o: std.json.ObjectMap, key: []const u8) ?[]const u8 {
        const v = o.get(key) orelse return null;
        return if (v == .string) v.string else null;
    }
};

/// Read and parse the envelope of this call.
pub fn request(arena: std.mem.Allocator) !Request {
    const raw = try input(arena);
    const value = try std.json.parseFromSliceLeaky(std.json.Value, arena, raw, .{});
    if (value != .object) return error.EnvelopeNotAnObject;
    return .{ .arena = arena, .raw = raw, .root = value.object };
}

/// Run a handler body with a per-call arena and a parsed envelope.
/// A Zig error escaping `f` becomes an INTERNAL error output.
pub fn run(comptime f: fn (*Request) anyerror!i32) i32 {
    var arena_state = std.heap.ArenaAllocator.init(allocator);
    defer arena_state.deinit();
    var req = request(arena_state.allocator()) catch return fail(.VALIDATION_FAILED, "request envelope is not a JSON object");
    return f(&req) catch |err| failFmt(.INTERNAL, "handler error: {s}", .{@errorName(err)});
}

// ---------------------------------------------------------------- router

/// A handler body, as `run` takes it.
pub const Handler = *const fn (*Request) anyerror!i32;

/// One entry of a router table: a `[[route]]`'s method and path template, and its handler.
pub const Route = struct {
    method: []const u8,
    route: []const u8,
    handler: Handler,
};

/// Call the handler of the first entry of `routes` whose method and route
/// template equal the envelope's (exact strings: the kernel already matched the
/// path, and the envelope's `route` is the template as written in plugin.toml).
/// A template with entries for other methods only answers METHOD_NOT_ALLOWED
/// (naming them), any other request NOT_FOUND. Several `[[route]]`s of
/// plugin.toml then name one export:
///
///     export fn api() i32 {
///         return arcana.serve(&.{
///             .{ .method = "GET", .route = "/api/v1/notes/{id}", .handler = getNote },
///             .{ .method = "PUT", .route = "/api/v1/notes/{id}", .handler = putNote },
///         });
///     }
pub fn dispatch(req: *Request, routes: []const Route) anyerror!i32 {
    const method_ = req.method();
    const route_ = req.route();
    var allowed: std.ArrayList(u8) = .empty;
    for (routes) |r| {
        if (!std.mem.eql(u8, r.route, route_)) continue;
        if (std.mem.eql(u8, r.method, method_)) return r.handler(req);
        if (allowed.items.len > 0) try allowed.appendSlice(req.arena, ", ");
        try allowed.appendSlice(req.arena, r.method);
    }
    if (allowed.items.len > 0)
        return failFmt(.METHOD_NOT_ALLOWED, "{s} is not allowed on {s} (allowed: {s})", .{ method_, route_, allowed.items });
    if (route_.len == 0)
        return failFmt(.NOT_FOUND, "{s} (no route: not an http envelope): no handler in this plugin's router", .{req.kind()});
    return failFmt(.NOT_FOUND, "{s} {s}: no handler in this plugin's router", .{ method_, route_ });
}

/// `run` + `dispatch`: the body of an export serving every route of `routes`.
pub fn serve(comptime routes: []const Route) i32 {
    const Served = struct {
        fn handle(req: *Request) anyerror!i32 {
            return dispatch(req, routes);
        }
    };
    return run(Served.handle);
}

// ---------------------------------------------------------------- output

/// Output `{"status": status, "body": body}`; `body` is any value std.json
/// can stringify (structs, `std.json.Value`, slices, ...). Returns 0.
pub fn respond(status: u16, body: anytype) i32 {
    return respondWith(status, struct {}{}, body);
}

/// Like `respond`, with a headers struct such as `.{ .@"x-a" = "b" }`
/// (or a `std.json.Value` object).
pub fn respondWith(status: u16, headers: anytype, body: anytype) i32 {
    const out = std.json.Stringify.valueAlloc(allocator, .{ .status = status, .headers = object(headers), .body = body }, .{}) catch
        return fail(.INTERNAL, "out of memory");
    defer allocator.free(out);
    output(out);
    return 0;
}

/// Output `{"status": status, "body": <body_json>}` where `body_json` is
/// already-serialized JSON (it is inserted verbatim).
pub fn respondJson(status: u16, body_json: []const u8) i32 {
    var buf: [48]u8 = undefined;
    const head = std.fmt.bufPrint(&buf, "{{\"status\":{d},\"headers\":{{}},\"body\":", .{status}) catch unreachable;
    const out = std.mem.concat(allocator, u8, &.{ head, body_json, "}" }) catch return fail(.INTERNAL, "out of memory");
    defer allocator.free(out);
    output(out);
    return 0;
}

/// Output a gRPC reply `{"message": message}`; `message` is any value
/// std.json can stringify, in the proto3 JSON shape of the output type.
pub fn reply(message: anytype) i32 {
    const out = std.json.Stringify.valueAlloc(allocator, .{ .message = message }, .{}) catch
        return fail(.INTERNAL, "out of memory");
    defer allocator.free(out);
    output(out);
    return 0;
}

/// Output `{"error": {"code": code, "message": message}}`. Returns 0: an
/// error output is a normal, well-formed result.
pub fn fail(code: Code, message: []const u8) i32 {
    const out = std.json.Stringify.valueAlloc(allocator, .{ .@"error" = .{ .code = @tagName(code), .message = message } }, .{}) catch {
        output("{\"error\":{\"code\":\"INTERNAL\",\"message\":\"out of memory\"}}");
        return 0;
    };
    defer allocator.free(out);
    output(out);
    return 0;
}

/// Output `{}`: a job or an event handled. Returns 0.
pub fn done() i32 {
    output("{}");
    return 0;
}

/// Output `{"result": value}`: a job handled, `value` (any std.json-serializable
/// value) kept as the job's result for `queue.status`. Returns 0.
pub fn jobResult(value: anytype) i32 {
    const out = std.json.Stringify.valueAlloc(allocator, .{ .result = value }, .{}) catch
        return fail(.INTERNAL, "out of memory");
    defer allocator.free(out);
    output(out);
    return 0;
}

/// Output `{"status": status}` with no body (e.g. 204 No Content). Returns 0.
pub fn respondEmpty(status: u16) i32 {
    var buf: [48]u8 = undefined;
    output(std.fmt.bufPrint(&buf, "{{\"status\":{d},\"headers\":{{}}}}", .{status}) catch unreachable);
    return 0;
}

/// `fail` with a formatted message.
pub fn failFmt(code: Code, comptime fmt: []const u8, args: anytype) i32 {
    const msg = std.fmt.allocPrint(allocator, fmt, args) catch return fail(code, fmt);
    defer allocator.free(msg);
    return fail(code, msg);
}

/// Type of `object(v)`: an empty tuple `.{}` becomes an empty struct.
fn Object(comptime T: type) type {
    const info = @typeInfo(T);
    return if (info == .@"struct" and info.@"struct".is_tuple and info.@"struct".field_names.len == 0) struct {} else T;
}

/// Make `.{}` serialize as the JSON object `{}` (std.json writes an empty tuple as `[]`).
pub fn object(v: anytype) Object(@TypeOf(v)) {
    return if (Object(@TypeOf(v)) == @TypeOf(v)) v else .{};
}

// ---------------------------------------------------------------- host API

/// Call host function `name` (namespace `extism:host/user`; one of
/// `HostFunction`, checked at compile time) with a JSON request; returns the
/// JSON reply (owned by `alloc_`). Replies that report a failure have the
/// shape `{"error": {"code": ..., "message": ...}}`; when the host gives no
/// reply at all, the reply is `host_call_failed` (INTERNAL), never `{}`.
///
///     const reply = try arcana.hostCall(arena, "kv_get", "{\"key\":\"k\"}");
pub fn hostCall(alloc_: std.mem.Allocator, comptime name: []const u8, request_json: []const u8) ![]u8 {
    comptime {
        if (std.meta.stringToEnum(HostFunction, name) == null)
            @compileError("'" ++ name ++ "' is not a host function of Arcana (see sdk/zig/contract.zig)");
    }
    const f = @extern(*const HostFn, .{ .name = name, .library_name = contract.host_namespace });
    const req_off = storeBlock(request_json);
    defer env.free(req_off);
    const reply_off = f(req_off);
    if (reply_off == 0) return alloc_.dupe(u8, host_call_failed);
    defer env.free(reply_off);
    return loadBlock(alloc_, reply_off);
}

/// Call host function `name` with any std.json-serializable request value.
pub fn hostCallValue(alloc_: std.mem.Allocator, comptime name: []const u8, req: anytype) ![]u8 {
    const body = try std.json.Stringify.valueAlloc(alloc_, req, .{});
    defer alloc_.free(body);
    return hostCall(alloc_, name, body);
}

/// The error a host function answered with (`{"error": {"code", "message"}}`).
pub const HostError = struct {
    code: Code,
    message: []const u8,
};

/// The outcome of a typed host call: its value, or the host's error. Errors
/// are values to switch on; nothing traps.
pub fn Result(comptime T: type) type {
    return union(enum) { ok: T, err: HostError };
}

/// Output a host error as this handler's own error (same code and message). Returns 0.
pub fn failWith(e: HostError) i32 {
    return fail(e.code, e.message);
}

/// Call host function `name` with a request value and parse the reply
/// object (allocated in `arena`); a reply `{"error": ...}`, an allocation
/// failure or an unreadable reply all come back as `.err`.
pub fn hostRequest(arena: std.mem.Allocator, comptime name: []const u8, req: anytype) Result(std.json.ObjectMap) {
    const raw = hostCallValue(arena, name, req) catch return .{ .err = .{ .code = .INTERNAL, .message = "out of memory" } };
    const value = std.json.parseFromSliceLeaky(std.json.Value, arena, raw, .{}) catch
        return .{ .err = .{ .code = .INTERNAL, .message = "host reply is not JSON" } };
    if (value != .object) return .{ .err = .{ .code = .INTERNAL, .message = "host reply is not a JSON object" } };
    const err = value.object.get("error") orelse return .{ .ok = value.object };
    if (err != .object) return .{ .err = .{ .code = .INTERNAL, .message = "host error is not an object" } };
    const code = err.object.get("code") orelse std.json.Value{ .null = {} };
    const message = err.object.get("message") orelse std.json.Value{ .null = {} };
    return .{ .err = .{
        .code = if (code == .string) std.meta.stringToEnum(Code, code.string) orelse .INTERNAL else .INTERNAL,
        .message = if (message == .string) message.string else "",
    } };
}

/// Documents (`store.get/put/delete/query/batch`) and key-value entries
/// (`kv.get/set/delete/incr`) of the `store` capability: see store.zig.
pub const store = @import("store.zig");

/// Password hashing, role checks and token minting of the `auth` capability: see auth.zig.
pub const auth = @import("auth.zig");

/// Enqueueing jobs and reading their status (`queue` capability), and the job envelope: see queue.zig.
pub const queue = @import("queue.zig");

/// Emitting events (`events` capability), and the event envelope: see events.zig.
pub const events = @import("events.zig");

/// Outbound HTTP to granted hosts (`http` capability, `fetch`): see http.zig.
pub const http = @import("http.zig");
pub const kv = store.kv;

/// Write a log line through the host (`log` capability). Never fails.
pub fn log(level: Level, message: []const u8) void {
    logFields(level, message, .{});
}

/// `log` with structured fields, e.g. `.{ .user = "bob" }`.
pub fn logFields(level: Level, message: []const u8, fields: anytype) void {
    const answer = hostCallValue(allocator, "log", .{ .level = @tagName(level), .message = message, .fields = object(fields) }) catch return;
    allocator.free(answer);
}
