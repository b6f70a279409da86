//! rawgreeter: `rawgreeter.v1.Greeter/SayHello` with `abi = "raw"`. The input is
//! the HelloRequest's protobuf wire bytes and the output the HelloReply's, so
//! the kernel transcodes nothing; the few lines of protobuf below are all the
//! guest needs for two one-string messages.
//!
//! HelloRequest{string name = 1} -> HelloReply{string message = 1} with
//! message = "Hello, " ++ name ++ "!". Unknown fields are skipped (as any
//! protobuf parser does); a malformed message, a group or a non-UTF-8 name is
//! refused with a non-zero return, which the kernel answers as PLUGIN_FAILED.
const std = @import("std");
const arcana = @import("arcana");

const Malformed = error{Malformed};

export fn say_hello() i32 {
    const request = arcana.input(arcana.allocator) catch return refuse("out of memory");
    defer arcana.allocator.free(request);
    const name = requestName(request) catch return refuse("malformed HelloRequest");
    if (!std.unicode.utf8ValidateSlice(name)) return refuse("HelloRequest.name is not UTF-8");

    const prefix = "Hello, ";
    const text_len = prefix.len + name.len + 1;
    // Tag, varint length (at most 10 bytes), then the text.
    const reply = arcana.allocator.alloc(u8, 1 + 10 + text_len) catch return refuse("out of memory");
    defer arcana.allocator.free(reply);
    reply[0] = 0x0A; // field 1, wire type 2 (length-delimited)
    var at: usize = 1 + putVarint(reply[1..], text_len);
    @memcpy(reply[at..][0..prefix.len], prefix);
    at += prefix.len;
    @memcpy(reply[at..][0..name.len], name);
    at += name.len;
    reply[at] = '!';
    arcana.output(reply[0 .. at + 1]);
    return 0;
}

/// Field 1 of a HelloRequest; the last occurrence wins, as protobuf says; "" when absent.
fn requestName(bytes: []const u8) Malformed![]const u8 {
    var name: []const u8 = "";
    var at: usize = 0;
    while (at < bytes.len) {
        const key = try getVarint(bytes, &at);
        const field = key >> 3;
        if (field == 0) return error.Malformed;
        switch (key & 7) {
            0 => _ = try getVarint(bytes, &at),
            1 => at = try skip(bytes, at, 8),
            2 => {
                const len = try getVarint(bytes, &at);
                const start = at;
                at = try skip(bytes, at, len);
                if (field == 1) name = bytes[start..at];
            },
            5 => at = try skip(bytes, at, 4),
            else => return error.Malformed, // groups (3, 4) and wire types 6, 7
        }
        // Field 1 is a string: any other wire type for it is a type mismatch.
        if (field == 1 and key & 7 != 2) return error.Malformed;
    }
    return name;
}

fn skip(bytes: []const u8, at: usize, len: u64) Malformed!usize {
    if (len > bytes.len - at) return error.Malformed;
    return at + @as(usize, @intCast(len));
}

fn getVarint(bytes: []const u8, at: *usize) Malformed!u64 {
    var value: u64 = 0;
    var shift: u7 = 0;
    while (shift < 64) : (shift += 7) {
        if (at.* >= bytes.len) return error.Malformed;
        const byte = bytes[at.*];
        at.* += 1;
        value |= @as(u64, byte & 0x7F) << @intCast(shift);
        if (byte & 0x80 == 0) return value;
    }
    return error.Malformed; // more than 10 bytes
}

fn putVarint(out: []u8, value: usize) usize {
    var v = value;
    var n: usize = 0;
    while (v >= 0x80) : (v >>= 7) {
        out[n] = @as(u8, @truncate(v)) | 0x80;
        n += 1;
    }
    out[n] = @truncate(v);
    return n + 1;
}

/// Fail the call with `message` as the guest's error (non-zero return: a plugin failure).
fn refuse(message: []const u8) i32 {
    arcana.env.error_set(arcana.storeBlock(message));
    return 1;
}
