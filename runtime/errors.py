"""The kernel's one error hierarchy.

Every error a client can see carries a stable ``code`` from the public error
model (ARCHITECTURE.md section 3.3); each edge maps codes to its transport in
one table (``arcana.edge.rest.HTTP_STATUS``, later the gRPC twin)::

    ArcanaError                  code            seen by
    ├── ValidationFailed         VALIDATION_FAILED   clients
    ├── Unauthorized             UNAUTHORIZED        clients
    ├── Forbidden                FORBIDDEN           clients
    ├── NotFound                 NOT_FOUND           clients
    ├── MethodNotAllowed         METHOD_NOT_ALLOWED  clients
    ├── Conflict                 CONFLICT            clients
    │   └── VersionConflict      CONFLICT            clients (gRPC: ABORTED)
    ├── PayloadTooLarge          PAYLOAD_TOO_LARGE   clients
    ├── RateLimited              RATE_LIMITED        clients
    ├── PluginTimeout            PLUGIN_TIMEOUT      clients (instance discarded)
    ├── ServiceUnavailable       SERVICE_UNAVAILABLE clients
    ├── PluginFailed             PLUGIN_FAILED       clients (trap, OOM, bad output)
    └── InternalError            INTERNAL            clients

Operator-facing faults are separate and never reach a client:
``ConfigError`` stops start-up; ``PluginLoadError`` refuses one plugin file and
lists each problem with its fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorCode(str, Enum):
    VALIDATION_FAILED = "VALIDATION_FAILED"
    UNAUTHORIZED = "UNAUTHORIZED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    CONFLICT = "CONFLICT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    PLUGIN_TIMEOUT = "PLUGIN_TIMEOUT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    PLUGIN_FAILED = "PLUGIN_FAILED"
    INTERNAL = "INTERNAL"


class ArcanaError(Exception):
    """An error in the public model: a stable code and a client-safe message."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        # For the operator's log only; never sent to a client.
        self.detail = detail
        if code is not None:
            self.code = code


class ValidationFailed(ArcanaError):
    code = ErrorCode.VALIDATION_FAILED


class Unauthorized(ArcanaError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(ArcanaError):
    code = ErrorCode.FORBIDDEN


class NotFound(ArcanaError):
    code = ErrorCode.NOT_FOUND


class MethodNotAllowed(ArcanaError):
    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, message: str, allowed: frozenset[str]) -> None:
        super().__init__(message)
        self.allowed = allowed


class Conflict(ArcanaError):
    code = ErrorCode.CONFLICT


class VersionConflict(Conflict):
    """A stale expected version: CONFLICT on REST, ABORTED on gRPC."""


class PayloadTooLarge(ArcanaError):
    code = ErrorCode.PAYLOAD_TOO_LARGE


class RateLimited(ArcanaError):
    code = ErrorCode.RATE_LIMITED


class PluginTimeout(ArcanaError):
    code = ErrorCode.PLUGIN_TIMEOUT


class ServiceUnavailable(ArcanaError):
    code = ErrorCode.SERVICE_UNAVAILABLE


class PluginFailed(ArcanaError):
    code = ErrorCode.PLUGIN_FAILED


class InternalError(ArcanaError):
    code = ErrorCode.INTERNAL


class ConfigError(Exception):
    """Start-up refused: names the file and the key, and what is wrong."""


@dataclass(frozen=True)
class Problem:
    """One reason a plugin is refused, with the field and the fix."""

    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text


class PluginLoadError(Exception):
    """A plugin file was refused; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[Problem], plugin: str | None = None) -> None:
        self.source = source
        self.plugin = plugin
        self.problems = problems
        who = f"plugin '{plugin}' ({source})" if plugin else source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{who} refused:\n{lines}")
