// Package entry point: asc resolves "@arcana/sdk" to <package>/index.ts.
export * from "./assembly/index";
