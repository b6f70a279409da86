//! Bindings of the `http` capability: outbound HTTP to the hosts the
//! manifest lists (`[capabilities] http = ["api.example.com", "*.example.com"]`,
//! and the operator grants `http`).
//!
//!     const res = switch (arcana.http.fetch(req.arena, "https://api.example.com/v1/items", .{
//!         .headers = &.{.{ .name = "accept", .value = "application/json" }},
//!         .timeout_ms = 2000,
//!     })) {
//!         .ok => |r| r,                          // r.status, r.header("content-type"), r.body
//!         .err => |e| return arcana.failWith(e), // FORBIDDEN, SERVICE_UNAVAILABLE, PLUGIN_TIMEOUT, ...
//!     };
//!
//! Any status the server answers (404, 500, ...) is `.ok`; `.err` means no
//! answer: a host not granted or an address refused (FORBIDDEN), a bad
//! request (VALIDATION_FAILED), a body or headers over the host's bounds
//! (PAYLOAD_TOO_LARGE), no answer in time (PLUGIN_TIMEOUT), a host that is
//! down or whose circuit breaker is open (SERVICE_UNAVAILABLE), more fetches
//! in one call than `capabilities.http.max_fetches_per_call` (RATE_LIMITED).
//! The host retries GET, HEAD, OPTIONS, PUT and DELETE on connection
//! failures and 502/503/504, and follows redirects to granted hosts.

const std = @import("std");
const arcana = @import("arcana.zig");

const Allocator = std.mem.Allocator;
const Value = std.json.Value;
const Result = arcana.Result;

pub const Method = enum { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS };

pub const Header = struct {
    name: []const u8,
    value: []const u8,
};

/// How to fetch; the defaults are a GET without body and the host's `default_timeout_ms`.
pub const Options = struct {
    method: Method = .GET,
    /// Host, Content-Length, Transfer-Encoding, Connection and the like are the host's (VALIDATION_FAILED).
    headers: []const Header = &.{},
    /// The request body, sent as is (text or bytes).
    body: ?[]const u8 = null,
    /// The whole fetch, retries and redirects included (at most `capabilities.http.max_timeout_ms`).
    timeout_ms: ?u32 = null,
};

pub const Response = struct {
    status: u16,
    /// Lower-case header names; a repeated header's values joined with ", ".
    headers: std.json.ObjectMap,
    /// The body bytes (at most `capabilities.http.max_response_bytes`).
    body: []const u8,
    /// True when the body was longer and was cut at the bound.
    truncated: bool,
    /// The URL that answered (the last one after redirects).
    url: []const u8,

    pub fn header(self: Response, name: []const u8) ?[]const u8 {
        const v = self.headers.get(name) orelse return null;
        return if (v == .string) v.string else null;
    }
};

fn fail(message: []const u8) arcana.HostError {
    return .{ .code = .INTERNAL, .message = message };
}

fn isUtf8(bytes: []const u8) bool {
    return std.unicode.utf8ValidateSlice(bytes);
}

/// Fetch `url` (http or https, a granted host). See the module doc for the errors.
pub fn fetch(arena: Allocator, url: []const u8, options: Options) Result(Response) {
    var headers: std.json.ObjectMap = .empty;
    for (options.headers) |h| headers.put(arena, h.name, .{ .string = h.value }) catch return .{ .err = fail("out of memory") };
    // Text travels as JSON text; other bytes as base64.
    var text: ?[]const u8 = null;
    var encoded: ?[]const u8 = null;
    if (options.body) |b| {
        if (isUtf8(b)) text = b else {
            const out = arena.alloc(u8, std.base64.standard.Encoder.calcSize(b.len)) catch return .{ .err = fail("out of memory") };
            encoded = std.base64.standard.Encoder.encode(out, b);
        }
    }
    const req = .{ .method = @tagName(options.method), .url = url, .headers = Value{ .object = headers },
                   .body = text, .body_base64 = encoded, .timeout_ms = options.timeout_ms };
    const reply = switch (arcana.hostRequest(arena, "http_fetch", req)) {
        .ok => |r| r,
        .err => |e| return .{ .err = e },
    };
    return response(arena, reply);
}

fn response(arena: Allocator, reply: std.json.ObjectMap) Result(Response) {
    const status = reply.get("status") orelse return .{ .err = fail("http reply without status") };
    if (status != .integer) return .{ .err = fail("http status is not an integer") };
    const headers = reply.get("headers") orelse Value{ .object = .empty };
    const truncated = reply.get("truncated") orelse Value{ .bool = false };
    const url = reply.get("url") orelse Value{ .string = "" };
    var body: []const u8 = "";
    if (reply.get("body")) |b| {
        if (b == .string) body = b.string;
    } else if (reply.get("body_base64")) |b| {
        if (b != .string) return .{ .err = fail("http body_base64 is not a string") };
        const decoder = std.base64.standard.Decoder;
        const size = decoder.calcSizeForSlice(b.string) catch return .{ .err = fail("http body_base64 is not base64") };
        const out = arena.alloc(u8, size) catch return .{ .err = fail("out of memory") };
        decoder.decode(out, b.string) catch return .{ .err = fail("http body_base64 is not base64") };
        body = out;
    }
    return .{ .ok = .{
        .status = @intCast(std.math.clamp(status.integer, 0, 999)),
        .headers = if (headers == .object) headers.object else .empty,
        .body = body,
        .truncated = truncated == .bool and truncated.bool,
        .url = if (url == .string) url.string else "",
    } };
}
