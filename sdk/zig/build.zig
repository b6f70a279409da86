//! The Arcana Zig SDK as a Zig package: a project with its own build.zig depends on this folder
//! (build.zig.zon: `.arcana = .{ .path = "..." }`) and imports the module "arcana":
//!
//!     const arcana = b.dependency("arcana", .{}).module("arcana");
//!     exe.root_module.addImport("arcana", arcana);
//!
//! `arcana plugin build` does not use this file: it hands the compiler arcana.zig directly.
const std = @import("std");

pub fn build(b: *std.Build) void {
    _ = b.addModule("arcana", .{ .root_source_file = b.path("arcana.zig") });
}
