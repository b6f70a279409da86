"""The kernel's own REST routes as OpenAPI operations: auth, admin, health and ready.

Written by hand beside the Quart handlers (arcana.edge.auth_rest, admin, users, admin_jobs, rest):
tests/runtime/test_openapi.py compares this table with the kernel app's URL map, so a route added
there without an entry here (or the reverse) fails. /metrics is left out: it is Prometheus text for
a scraper, not part of the API, and /openapi.json and /docs describe the API rather than belong to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KERNEL_TAG = "kernel"
ADMIN_ROLE = "admin"

_TIMESTAMP = {"type": "number", "description": "seconds since the Unix epoch"}
TOKEN_PAIR = {
    "type": "object",
    "required": ["access_token", "refresh_token", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string", "description": "a JWT: send it as `Authorization: Bearer <token>`"},
        "refresh_token": {"type": "string"},
        "token_type": {"type": "string", "const": "Bearer"},
        "expires_in": {"type": "integer", "description": "seconds until the access token expires"},
    },
}
USER = {
    "type": "object",
    "required": ["id", "email", "roles", "disabled", "created_at", "updated_at"],
    "properties": {
        "id": {"type": "string"},
        "email": {"type": "string"},
        "roles": {"type": "array", "items": {"type": "string"}},
        "disabled": {"type": "boolean"},
        "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP,
    },
}
JOB = {
    "type": "object",
    "required": ["id", "type", "state", "priority", "attempts"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string"},
        "state": {"type": "string"},
        "priority": {"type": "string"},
        "attempts": {"type": "integer"},
        "max_retries": {"type": "integer"},
        "run_at": _TIMESTAMP,
        "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP,
        "finished_at": {"type": ["number", "null"]},
        "owner": {"type": ["string", "null"]},
        "target": {"type": ["string", "null"]},
        "result": {},
        "error": {},
    },
}
# The identity service's rules (arcana.auth.users) for what a client should send: an address of printable
# ASCII (the service also takes other characters, but no control or format ones, and trims and lower-cases it).
EMAIL = {"type": "string", "maxLength": 254, "pattern": "^[!-?A-~]{1,64}@[!-?A-~]{1,189}$"}
PASSWORD = {"type": "string", "minLength": 8}
ROLES = {"type": "array", "items": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]{0,63}$"}}
# A job id as the backends make them (arcana.edge.jobs_ops.job_id): printable, no spaces, 1-128 characters.
JOB_ID = {"type": "string", "pattern": "^[!-~]{1,128}$"}
_SELECTION = {
    "description": 'either `{"ids": [...]}` (1-1000 job ids) or `{"all": true}`',
    "oneOf": [
        {
            "type": "object",
            "required": ["ids"],
            "properties": {
                "ids": {"type": "array", "items": JOB_ID, "minItems": 1, "maxItems": 1000},
                "all": {"const": False},
            },
            "additionalProperties": False,
        },
        {
            "type": "object",
            "required": ["all"],
            "properties": {"all": {"const": True}, "ids": {"type": ["array", "null"], "maxItems": 0}},
            "additionalProperties": False,
        },
    ],
}
_COUNT = {"type": "integer", "minimum": 0}
_PLUGIN = {
    "type": "object",
    "required": ["name", "version", "state", "routes", "grpc"],
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "state": {"type": "string"},
        "routes": {"type": "array", "items": {"type": "object"}},
        "grpc": {"type": "array", "items": {"type": "string"}},
    },
}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


@dataclass(frozen=True)
class KernelOperation:
    """One kernel route; ``roles`` None: public, () any signed-in user, else one of these roles."""

    method: str
    path: str
    summary: str
    ok_status: int
    ok_schema: dict[str, Any] | None
    roles: tuple[str, ...] | None = (ADMIN_ROLE,)
    body: dict[str, Any] | None = None
    # Path parameters with more to say than "a string" (the default).
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Error statuses beyond those the builder adds for every operation and for its security.
    errors: tuple[int, ...] = ()


def _page_query(limit_name: str, high: int, low: int = 1) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high, "description": f"{limit_name}, {low}-{high}"}


KERNEL_OPERATIONS: tuple[KernelOperation, ...] = (
    KernelOperation(
        "GET", "/health", "Liveness: the process answers", 200, _object(["status"], status={"const": "ok"}), None
    ),
    KernelOperation(
        "GET",
        "/ready",
        "Readiness: plugins loaded and the backing services up (503 with Retry-After until then)",
        200,
        _object(["status"], status={"const": "ready"}, plugins={}),
        None,
        errors=(503,),
    ),
    KernelOperation(
        "POST",
        "/api/v1/auth/login",
        "Log in with e-mail and password: an access token (a JWT) and a refresh token",
        200,
        TOKEN_PAIR,
        None,
        body=_object(["email", "password"], email=EMAIL, password={"type": "string", "minLength": 1}),
        errors=(401, 429),
    ),
    KernelOperation(
        "POST",
        "/api/v1/auth/refresh",
        "Trade a refresh token for a new pair (the old refresh token is spent)",
        200,
        TOKEN_PAIR,
        None,
        body=_object(["refresh_token"], refresh_token={"type": "string", "minLength": 1}),
        errors=(401,),
    ),
    KernelOperation(
        "POST",
        "/api/v1/auth/logout",
        "End the refresh token's session (with everywhere: true, every session of the user)",
        204,
        None,
        None,
        body=_object(
            ["refresh_token"], refresh_token={"type": "string", "minLength": 1}, everywhere={"type": "boolean"}
        ),
    ),
    KernelOperation(
        "GET",
        "/api/v1/admin/plugins",
        "The loaded plugins and the files that failed to load",
        200,
        _object(
            ["plugins", "failures"],
            plugins={"type": "array", "items": _PLUGIN},
            failures={"type": "array", "items": {"type": "object"}},
        ),
    ),
    KernelOperation(
        "GET",
        "/api/v1/admin/users",
        "Users, a page at a time",
        200,
        _object(
            ["items", "total", "page", "size"],
            items={"type": "array", "items": USER},
            total=_COUNT,
            page={"type": "integer"},
            size={"type": "integer"},
        ),
        query={"page": _page_query("page number", 1_000_000), "size": _page_query("page size", 100)},
    ),
    KernelOperation(
        "POST",
        "/api/v1/admin/users",
        "Create a user",
        201,
        USER,
        body=_object(["email", "password"], email=EMAIL, password=PASSWORD, roles=ROLES),
        errors=(409,),
    ),
    KernelOperation("GET", "/api/v1/admin/users/{user_id}", "One user", 200, USER),
    KernelOperation(
        "PATCH",
        "/api/v1/admin/users/{user_id}",
        "Change a user's roles, password or disabled flag (revokes what the change takes away)",
        200,
        USER,
        body={
            "type": "object",
            "properties": {"roles": ROLES, "password": PASSWORD, "disabled": {"type": "boolean"}},
            "minProperties": 1,
            "additionalProperties": False,
        },
        errors=(409,),
    ),
    KernelOperation(
        "DELETE", "/api/v1/admin/users/{user_id}", "Delete a user (never the last admin)", 204, None, errors=(409,)
    ),
    KernelOperation(
        "GET",
        "/api/v1/admin/jobs",
        "Queue statistics",
        200,
        _object(
            ["ready", "delayed", "running", "dead", "succeeded"],
            ready={"type": "object", "additionalProperties": {"type": "integer"}},
            delayed=_COUNT,
            running=_COUNT,
            dead=_COUNT,
            succeeded=_COUNT,
        ),
        errors=(503,),
    ),
    KernelOperation(
        "GET",
        "/api/v1/admin/jobs/dead",
        "Dead jobs, most recently dead first",
        200,
        _object(["items", "limit", "offset"], items={"type": "array", "items": JOB}, limit=_COUNT, offset=_COUNT),
        query={"limit": _page_query("page size", 500), "offset": _page_query("jobs to skip", 1_000_000, 0)},
        errors=(503,),
    ),
    KernelOperation(
        "POST",
        "/api/v1/admin/jobs/dead/replay",
        "Queue dead jobs again",
        200,
        _object(["replayed"], replayed=_COUNT),
        body=_SELECTION,
        errors=(503,),
    ),
    KernelOperation(
        "POST",
        "/api/v1/admin/jobs/dead/purge",
        "Delete dead jobs",
        200,
        _object(["purged"], purged=_COUNT),
        body=_SELECTION,
        errors=(503,),
    ),
    KernelOperation(
        "GET",
        "/api/v1/admin/jobs/{job_id}",
        "One job, in any state",
        200,
        JOB,
        params={"job_id": JOB_ID},
        errors=(400, 503),
    ),
)
