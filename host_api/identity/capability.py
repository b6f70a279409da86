"""Host functions of the `auth` capability, backed by the kernel's own identity service.

    auth_hash_password    {"password"}                 -> {"hash"}            (Argon2id)
    auth_verify_password  {"password", "hash"}         -> {"valid": bool}
    auth_check_role       {"role"}                     -> {"has_role": bool}   (the calling request's principal)
    auth_issue_token      {"sub", "roles", "ttl_s"?}   -> {"access_token", "expires_in"}   grant `auth.issue`

The kernel's secrets never cross into the plugin: it gets hashes and tokens,
never keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from arcana.errors import Problem, ServiceUnavailable, ValidationFailed
from arcana.manifest import Manifest
from arcana_host.capability import CallContext, HostFunction

MAX_ISSUED_TTL_S = 3600


class Identity(Protocol):
    """What the capability needs from the kernel's auth service."""

    def hash_password(self, password: str) -> str: ...

    def verify_password(self, stored: str, password: str) -> bool: ...

    def issue_token(self, sub: str, roles: list[str], ttl_s: int) -> tuple[str, int]: ...


def _text(request: dict[str, Any], key: str, limit: int = 1024) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValidationFailed(f"'{key}' must be a non-empty string of at most {limit} characters")
    return value


class IdentityCapability:
    name = "auth"

    def __init__(self, identity: Identity | None) -> None:
        self._identity = identity

    def _service(self) -> Identity:
        if self._identity is None:
            raise ServiceUnavailable("identity is not available in this process")
        return self._identity

    def host_functions(self) -> Sequence[HostFunction]:
        return [
            HostFunction("auth_hash_password", "auth", self.hash_password),
            HostFunction("auth_verify_password", "auth", self.verify_password),
            HostFunction("auth_check_role", "auth", self.check_role),
            HostFunction("auth_issue_token", "auth.issue", self.issue_token),
        ]

    def configure(self, manifest: Manifest) -> list[Problem]:
        return []

    def close(self) -> None:
        pass

    def hash_password(self, ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        return {"hash": self._service().hash_password(_text(request, "password"))}

    def verify_password(self, ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        return {"valid": self._service().verify_password(_text(request, "hash"), _text(request, "password"))}

    def check_role(self, ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        role = _text(request, "role", 64)
        roles = (ctx.principal or {}).get("roles", [])
        return {"has_role": role in roles}

    def issue_token(self, ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        roles = request.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise ValidationFailed("'roles' must be a list of strings")
        ttl = request.get("ttl_s", 900)
        if not isinstance(ttl, int) or not 1 <= ttl <= MAX_ISSUED_TTL_S:
            raise ValidationFailed(f"'ttl_s' must be an integer 1-{MAX_ISSUED_TTL_S}")
        token, expires_in = self._service().issue_token(_text(request, "sub", 256), roles, ttl)
        return {"access_token": token, "expires_in": expires_in}
