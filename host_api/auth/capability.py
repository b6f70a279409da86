"""Host functions of the `auth` capability, backed by the kernel's own identity service.

    auth_hash_password    {"password"}                 -> {"hash"}            (Argon2id)
    auth_verify_password  {"password", "hash"}         -> {"valid": bool}
    auth_check_role       {"role"}                     -> {"has_role": bool}   (the calling request's principal)
    auth_issue_token      {"sub", "roles", "ttl_s"?}   -> {"access_token", "expires_in"}   grant `auth.issue`

The kernel's secrets never cross into the plugin: it gets hashes and tokens,
never keys.
"""

from __future__ import annotations

from typing import Any, Protocol

from arcana.errors import ServiceUnavailable, ValidationFailed
from arcana.types import CallContext, HostFunction, JsonObject
from arcana_host.call_scoped import CallScoped

MAX_ISSUED_TTL_S = 3600


class Identity(Protocol):
    """What the capability needs from the kernel's auth service."""

    def hash_password(self, password: str) -> str: ...

    def verify_password(self, stored: str, password: str) -> bool: ...

    def issue_token(self, sub: str, roles: list[str], ttl_s: int) -> tuple[str, int]: ...


def _text(request: JsonObject, key: str, limit: int = 1024) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValidationFailed(f"'{key}' must be a non-empty string of at most {limit} characters")
    return value


class AuthCapability(CallScoped):
    name = "auth"

    def __init__(self, identity: Identity | None) -> None:
        self._identity = identity

    def _service(self) -> Identity:
        if self._identity is None:
            raise ServiceUnavailable("identity is not available in this process")
        return self._identity

    def hash_password(self, call: CallContext, request: JsonObject) -> JsonObject:
        return {"hash": self._service().hash_password(_text(request, "password"))}

    def verify_password(self, call: CallContext, request: JsonObject) -> JsonObject:
        return {"valid": self._service().verify_password(_text(request, "hash"), _text(request, "password"))}

    def check_role(self, call: CallContext, request: JsonObject) -> JsonObject:
        role = _text(request, "role", 64)
        roles: Any = (call.principal or {}).get("roles", [])
        return {"has_role": role in roles}

    def issue_token(self, call: CallContext, request: JsonObject) -> JsonObject:
        roles = request.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationFailed("'roles' must be a list of strings")
        ttl = request.get("ttl_s", 900)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_ISSUED_TTL_S:
            raise ValidationFailed(f"'ttl_s' must be an integer 1-{MAX_ISSUED_TTL_S}")
        token, expires_in = self._service().issue_token(_text(request, "sub", 256), roles, ttl)
        return {"access_token": token, "expires_in": expires_in}

    functions = (
        HostFunction("auth_hash_password", "auth", hash_password),
        HostFunction("auth_verify_password", "auth", verify_password),
        HostFunction("auth_check_role", "auth", check_role),
        # Minting tokens is a grant of its own: most plugins that hash passwords must not issue tokens.
        HostFunction("auth_issue_token", "auth.issue", issue_token),
    )
