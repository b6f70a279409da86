//! notes: CRUD on /api/v1/notes, kept in the store (collection "notes").
//!
//!   GET    /api/v1/notes?tag=&sort=created_at|updated_at|title&order=asc|desc&page=&size=
//!   POST   /api/v1/notes            {"title", "body"?, "tags"?}        -> 201 + Location
//!   GET    /api/v1/notes/{id}                                          -> 200 | 404
//!   PUT    /api/v1/notes/{id}       {"title", "body"?, "tags"?, "version"} -> 200 | 404 | 409
//!   DELETE /api/v1/notes/{id}?version=N                                -> 204 | 404 | 409
//!
//! Every route needs a signed-in user (the kernel checks the token before the
//! plugin runs). Each change is also an event, `note.created`, `note.updated`
//! or `note.deleted` with `{"id", "owner"}` (and the title for the first two),
//! for subscribers such as plugins/audit-log. A note belongs to the user who created it (`owner` = the
//! principal's `sub`); a user sees and changes only their own notes, and a
//! user with role `admin` sees and changes all. Someone else's note answers
//! 404, as if it did not exist.
const std = @import("std");
const arcana = @import("arcana");

const COLLECTION = "notes";
const MAX_TITLE = 200;
const MAX_BODY = 20_000;
const MAX_TAGS = 20;
const MAX_TAG = 40;

/// What a client may set; everything else in a request body is ignored.
const Note = struct {
    title: []const u8,
    body: []const u8 = "",
    tags: []const []const u8 = &.{},
};

/// What is stored: the client's fields plus the owner, which only the plugin sets.
const Owned = struct {
    title: []const u8,
    body: []const u8,
    tags: []const []const u8,
    owner: []const u8,

    fn of(note: Note, owner: []const u8) Owned {
        return .{ .title = note.title, .body = note.body, .tags = note.tags, .owner = owner };
    }
};

/// The caller: the principal's `sub`, and whether it holds role `admin`.
const Caller = struct {
    sub: []const u8,
    admin: bool,

    fn of(req: *arcana.Request) ?Caller {
        const p = req.field("principal") orelse return null;
        if (p != .object) return null;
        const sub = p.object.get("sub") orelse return null;
        if (sub != .string or sub.string.len == 0) return null;
        var admin = false;
        if (p.object.get("roles")) |roles| {
            if (roles == .array) for (roles.array.items) |r| {
                if (r == .string and std.mem.eql(u8, r.string, "admin")) admin = true;
            };
        }
        return .{ .sub = sub.string, .admin = admin };
    }

    fn owns(self: Caller, doc: arcana.store.Document) bool {
        if (self.admin) return true;
        const owner = doc.field("owner") orelse return false;
        return owner == .string and std.mem.eql(u8, owner.string, self.sub);
    }
};

fn noCaller() i32 {
    return arcana.fail(.UNAUTHORIZED, "sign in to use notes");
}

/// The note `id` if the caller may see it; else the error to answer with.
fn visible(req: *arcana.Request, caller: Caller) union(enum) { doc: arcana.store.Document, answered: i32 } {
    return switch (arcana.store.get(req.arena, COLLECTION, req.param("id") orelse "")) {
        .ok => |doc| if (caller.owns(doc)) .{ .doc = doc } else .{ .answered = arcana.fail(.NOT_FOUND, "no such note") },
        .err => |e| .{ .answered = failFor(e) },
    };
}

export fn list_notes() i32 {
    return arcana.run(list);
}
export fn create_note() i32 {
    return arcana.run(create);
}
export fn get_note() i32 {
    return arcana.run(get);
}
export fn update_note() i32 {
    return arcana.run(update);
}
export fn delete_note() i32 {
    return arcana.run(remove);
}

fn list(req: *arcana.Request) !i32 {
    const caller = Caller.of(req) orelse return noCaller();
    const sort = req.query("sort") orelse "created_at";
    if (!oneOf(sort, &.{ "created_at", "updated_at", "title" }))
        return arcana.fail(.VALIDATION_FAILED, "sort must be created_at, updated_at or title");
    const order = std.meta.stringToEnum(arcana.store.Order, req.query("order") orelse "desc") orelse
        return arcana.fail(.VALIDATION_FAILED, "order must be asc or desc");
    const options: arcana.store.QueryOptions = .{
        .sort = sort, .order = order,
        .page = number(req.query("page")) catch return arcana.fail(.VALIDATION_FAILED, "page must be a positive integer"),
        .size = number(req.query("size")) catch return arcana.fail(.VALIDATION_FAILED, "size must be a positive integer"),
    };
    const tag_filter = if (req.query("tag")) |tag| .{ .@"$contains" = tag } else null;
    const result = if (caller.admin) (if (tag_filter) |t|
        arcana.store.query(req.arena, COLLECTION, .{ .tags = t }, options)
    else
        arcana.store.query(req.arena, COLLECTION, null, options)) else (if (tag_filter) |t|
        arcana.store.query(req.arena, COLLECTION, .{ .owner = caller.sub, .tags = t }, options)
    else
        arcana.store.query(req.arena, COLLECTION, .{ .owner = caller.sub }, options));
    return switch (result) {
        .ok => |page| arcana.respond(200, page.value),
        .err => |e| arcana.failWith(e),
    };
}

fn create(req: *arcana.Request) !i32 {
    const caller = Caller.of(req) orelse return noCaller();
    const note = parseNote(req) catch |e| return invalid(e);
    const doc = switch (arcana.store.put(req.arena, COLLECTION, null, Owned.of(note, caller.sub), null)) {
        .ok => |d| d,
        .err => |e| return arcana.failWith(e),
    };
    const location = try std.fmt.allocPrint(req.arena, "/api/v1/notes/{s}", .{doc.id()});
    arcana.logFields(.info, "note created", .{ .id = doc.id() });
    announce(req, "note.created", .{ .id = doc.id(), .owner = caller.sub, .title = note.title });
    return arcana.respondWith(201, .{ .location = location }, doc.value);
}

fn get(req: *arcana.Request) !i32 {
    const caller = Caller.of(req) orelse return noCaller();
    return switch (visible(req, caller)) {
        .doc => |doc| arcana.respond(200, doc.value),
        .answered => |rc| rc,
    };
}

/// The store refuses an id it could never hold (VALIDATION_FAILED): for a
/// client asking for /notes/{that id}, there is simply no such note.
fn failFor(e: arcana.HostError) i32 {
    if (e.code == .VALIDATION_FAILED) return arcana.fail(.NOT_FOUND, "no such note");
    return arcana.failWith(e);
}

fn update(req: *arcana.Request) !i32 {
    const caller = Caller.of(req) orelse return noCaller();
    const note = parseNote(req) catch |e| return invalid(e);
    const version = expectedVersion(req) orelse
        return arcana.fail(.VALIDATION_FAILED, "version is required (the version you read; or an If-Match header)");
    const current = switch (visible(req, caller)) {
        .doc => |doc| doc,
        .answered => |rc| return rc,
    };
    // The owner never changes, even when an admin edits; the version check makes the read-then-write safe.
    const owner = if (current.field("owner")) |o| (if (o == .string) o.string else caller.sub) else caller.sub;
    return switch (arcana.store.put(req.arena, COLLECTION, req.param("id") orelse "", Owned.of(note, owner), version)) {
        .ok => |doc| {
            announce(req, "note.updated", .{ .id = doc.id(), .owner = owner, .title = note.title });
            return arcana.respond(200, doc.value);
        },
        .err => |e| failFor(e),
    };
}

fn remove(req: *arcana.Request) !i32 {
    const caller = Caller.of(req) orelse return noCaller();
    const current = switch (visible(req, caller)) {
        .doc => |doc| doc,
        .answered => |rc| return rc,
    };
    const version: ?i64 = if (req.query("version")) |v|
        std.fmt.parseInt(i64, v, 10) catch return arcana.fail(.VALIDATION_FAILED, "version must be an integer")
    else
        expectedVersion(req);
    return switch (arcana.store.delete(req.arena, COLLECTION, req.param("id") orelse "", version)) {
        .ok => {
            const owner = if (current.field("owner")) |o| (if (o == .string) o.string else "") else "";
            announce(req, "note.deleted", .{ .id = current.id(), .owner = owner });
            return arcana.respondEmpty(204);
        },
        .err => |e| failFor(e),
    };
}

/// Emit a change event. The change is saved by now: a failed emit is logged,
/// not answered, so that a client never retries a change that was made.
fn announce(req: *arcana.Request, topic: []const u8, payload: anytype) void {
    switch (arcana.events.emit(req.arena, topic, payload)) {
        .ok => {},
        .err => |e| arcana.logFields(.warn, "event not emitted", .{ .topic = topic, .code = @tagName(e.code), .reason = e.message }),
    }
}

const Invalid = error{ NoBody, NoTitle, BadTitle, BadBody, BadTags, OutOfMemory };

fn invalid(e: Invalid) i32 {
    return arcana.fail(.VALIDATION_FAILED, switch (e) {
        error.NoBody => "a JSON object body is required",
        error.NoTitle => "title is required",
        error.BadTitle => "title must be a string of 1 to 200 bytes",
        error.BadBody => "body must be a string of at most 20000 bytes",
        error.BadTags => "tags must be a list of at most 20 strings of 1 to 40 bytes",
        error.OutOfMemory => "out of memory",
    });
}

fn parseNote(req: *arcana.Request) Invalid!Note {
    const body = req.body() orelse return error.NoBody;
    if (body != .object) return error.NoBody;
    const title = body.object.get("title") orelse return error.NoTitle;
    if (title != .string or title.string.len == 0 or title.string.len > MAX_TITLE) return error.BadTitle;
    var note: Note = .{ .title = title.string };
    if (body.object.get("body")) |text| {
        if (text != .string or text.string.len > MAX_BODY) return error.BadBody;
        note.body = text.string;
    }
    if (body.object.get("tags")) |tags| {
        if (tags != .array or tags.array.items.len > MAX_TAGS) return error.BadTags;
        const out = try req.arena.alloc([]const u8, tags.array.items.len);
        for (tags.array.items, out) |tag, *slot| {
            if (tag != .string or tag.string.len == 0 or tag.string.len > MAX_TAG) return error.BadTags;
            slot.* = tag.string;
        }
        note.tags = out;
    }
    return note;
}

/// The version the client read: `"version"` in the body, or an `If-Match: "N"` header.
fn expectedVersion(req: *arcana.Request) ?i64 {
    if (req.body()) |body| {
        if (body == .object) {
            if (body.object.get("version")) |v| return if (v == .integer and v.integer > 0) v.integer else null;
        }
    }
    const tag = req.header("if-match") orelse return null;
    return std.fmt.parseInt(i64, std.mem.trim(u8, tag, "\" W/"), 10) catch null;
}

fn number(text: ?[]const u8) !?u32 {
    const t = text orelse return null;
    const n = try std.fmt.parseInt(u32, t, 10);
    return if (n == 0) error.Zero else n;
}

fn oneOf(value: []const u8, comptime options: []const []const u8) bool {
    for (options) |o| if (std.mem.eql(u8, value, o)) return true;
    return false;
}
