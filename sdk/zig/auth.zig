//! Bindings of the `auth` capability (`[capabilities] auth = true`; minting
//! tokens needs `"auth.issue" = true` too). Errors are values, as in store.zig.
//!
//!     const h = switch (arcana.auth.hashPassword(req.arena, pw)) { .ok => |v| v, .err => |e| return arcana.failWith(e) };
//!     const admin = switch (arcana.auth.checkRole(req.arena, "admin")) { .ok => |v| v, .err => false };

const std = @import("std");
const arcana = @import("arcana.zig");

const Allocator = std.mem.Allocator;
const Result = arcana.Result;

fn stringField(reply: std.json.ObjectMap, name: []const u8) Result([]const u8) {
    const v = reply.get(name) orelse return .{ .err = .{ .code = .INTERNAL, .message = "host reply lacks a field" } };
    return if (v == .string) .{ .ok = v.string } else .{ .err = .{ .code = .INTERNAL, .message = "host reply field is not a string" } };
}

fn boolField(reply: std.json.ObjectMap, name: []const u8) Result(bool) {
    const v = reply.get(name) orelse return .{ .err = .{ .code = .INTERNAL, .message = "host reply lacks a field" } };
    return if (v == .bool) .{ .ok = v.bool } else .{ .err = .{ .code = .INTERNAL, .message = "host reply field is not a bool" } };
}

/// Argon2id hash of `password` (the kernel's parameters).
pub fn hashPassword(arena: Allocator, password: []const u8) Result([]const u8) {
    return switch (arcana.hostRequest(arena, "auth_hash_password", .{ .password = password })) {
        .ok => |r| stringField(r, "hash"),
        .err => |e| .{ .err = e },
    };
}

/// Whether `password` matches a hash made by `hashPassword`.
pub fn verifyPassword(arena: Allocator, hash: []const u8, password: []const u8) Result(bool) {
    return switch (arcana.hostRequest(arena, "auth_verify_password", .{ .hash = hash, .password = password })) {
        .ok => |r| boolField(r, "valid"),
        .err => |e| .{ .err = e },
    };
}

/// Whether the principal of the current request holds `role`.
pub fn checkRole(arena: Allocator, role: []const u8) Result(bool) {
    return switch (arcana.hostRequest(arena, "auth_check_role", .{ .role = role })) {
        .ok => |r| boolField(r, "has_role"),
        .err => |e| .{ .err = e },
    };
}

/// Mint an access token for `sub` with `roles` (grant `auth.issue`); the token text.
pub fn issueToken(arena: Allocator, sub: []const u8, roles: []const []const u8, ttl_s: i64) Result([]const u8) {
    return switch (arcana.hostRequest(arena, "auth_issue_token", .{ .sub = sub, .roles = roles, .ttl_s = ttl_s })) {
        .ok => |r| stringField(r, "access_token"),
        .err => |e| .{ .err = e },
    };
}
