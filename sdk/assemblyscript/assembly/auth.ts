// Bindings of the `auth` capability: `[capabilities] auth = true` (and
// `"auth.issue" = true` to mint tokens). Errors come back as values:
//
//   const h = auth.hashPassword(pw);
//   if (!h.ok) return failWith(h.error!);
import { hostCall } from "./index";
import { JsonKind, JsonObject, JsonValue, parseJson } from "./json";
import { Result, HostError } from "./store";

import {
  host_auth_hash_password, host_auth_verify_password, host_auth_check_role, host_auth_issue_token,
} from "./contract";

function reply(fn: (offset: u64) => u64, requestJson: string): JsonValue {
  const r = parseJson(hostCall(fn, requestJson));
  return r == null ? parseJson("{\"error\":{\"code\":\"INTERNAL\",\"message\":\"host reply is not JSON\"}}")! : r;
}

function errorOf(r: JsonValue): HostError | null {
  const err = r.get("error");
  if (err == null) return null;
  const code = err.getString("code");
  const message = err.getString("message");
  return new HostError(code == null ? "INTERNAL" : code, message == null ? "" : message);
}

function text(r: JsonValue, field: string): Result<string> {
  const err = errorOf(r);
  if (err != null) return new Result<string>("", err);
  const v = r.getString(field);
  return v == null ? new Result<string>("", new HostError("INTERNAL", "host reply lacks " + field)) : new Result<string>(v);
}

function flag(r: JsonValue, field: string): Result<bool> {
  const err = errorOf(r);
  if (err != null) return new Result<bool>(false, err);
  const v = r.get(field);
  return v != null && v.kind == JsonKind.Bool ? new Result<bool>(v.bool) : new Result<bool>(false, new HostError("INTERNAL", "host reply lacks " + field));
}

export namespace auth {
  /** Argon2id hash of `password` with the kernel's parameters. */
  export function hashPassword(password: string): Result<string> {
    return text(reply(host_auth_hash_password, new JsonObject().str("password", password).toString()), "hash");
  }
  /** Whether `password` matches `hash`. */
  export function verifyPassword(hash: string, password: string): Result<bool> {
    return flag(reply(host_auth_verify_password, new JsonObject().str("hash", hash).str("password", password).toString()), "valid");
  }
  /** Whether the current request's principal holds `role`. */
  export function checkRole(role: string): Result<bool> {
    return flag(reply(host_auth_check_role, new JsonObject().str("role", role).toString()), "has_role");
  }
  /** Mint an access token (grant `auth.issue`); `rolesJson` is a JSON array of strings. */
  export function issueToken(sub: string, rolesJson: string, ttlSeconds: i64 = 900): Result<string> {
    const req = new JsonObject().str("sub", sub).raw("roles", rolesJson).int("ttl_s", ttlSeconds);
    return text(reply(host_auth_issue_token, req.toString()), "access_token");
  }
}
