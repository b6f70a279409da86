"""The kernel's one error tree.

Two roots, never mixed. ``ArcanaError`` is the public error model: each class
carries a stable ``code`` that every edge maps to its transport through one
table (``arcana.edge.errors.HTTP_STATUS``, ``arcana.edge.grpc_errors.GRPC_STATUS``),
and transport details travel as real fields (``retry_after``, ``allowed``).
``OperatorError`` is for whoever runs the kernel: it stops start-up, refuses a
plugin file or reports a broken build, and never reaches a client::

    ArcanaError                      code                 extra fields
    ├── ValidationFailed             VALIDATION_FAILED
    ├── Unauthorized                 UNAUTHORIZED
    │   ├── TokenExpired             TOKEN_EXPIRED
    │   └── InvalidCredentials       INVALID_CREDENTIALS
    ├── Forbidden                    FORBIDDEN
    ├── NotFound                     NOT_FOUND
    ├── MethodNotAllowed             METHOD_NOT_ALLOWED   allowed
    ├── Conflict                     CONFLICT
    │   └── VersionConflict          CONFLICT             (gRPC: ABORTED)
    ├── PayloadTooLarge              PAYLOAD_TOO_LARGE
    ├── RateLimited                  RATE_LIMITED         retry_after
    ├── PluginTimeout                PLUGIN_TIMEOUT
    ├── ServiceUnavailable           SERVICE_UNAVAILABLE  retry_after
    │   ├── CircuitOpen              SERVICE_UNAVAILABLE  a breaker refused at once: nothing was called
    │   └── BackendUnreachable       SERVICE_UNAVAILABLE  a backend not reached: nothing was sent
    ├── PluginFailed                 PLUGIN_FAILED        (trap, OOM, bad output)
    └── InternalError                INTERNAL             (a kernel bug; details only in the log)

    OperatorError
    ├── ConfigError                  bad configuration: names the key and the file
    ├── PluginLoadError              a plugin file refused: every Problem with its fix
    ├── ManifestInvalid              a manifest's problems (wrapped into PluginLoadError by the loader)
    ├── PathTemplateError            a bad route template
    ├── DescriptorError              protobuf descriptors that do not resolve or fit
    ├── WasmFormatError              bytes that are not a WebAssembly module
    ├── FileChanging                 a plugin file still being written
    ├── ModuleRejected               the engine cannot compile or instantiate a module
    └── GuestFault                   one guest call trapped, timed out or ran out of memory

``ERROR_CODES`` is the public list of codes; the guest SDKs are checked
against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class ErrorCode(StrEnum):
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


ERROR_CODES: tuple[str, ...] = tuple(code.value for code in ErrorCode)


class ArcanaError(Exception):
    """An error in the public model: a stable code and a client-safe message."""

    code: ErrorCode = ErrorCode.INTERNAL
    # Seconds a client should wait before trying again (429 and 503 answers).
    retry_after: int | None = None

    def __init__(self, message: str, *, code: ErrorCode | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        # For the operator's log only; never sent to a client.
        self.detail = detail
        if code is not None:
            self.code = code


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class ValidationFailed(ArcanaError):
    code = ErrorCode.VALIDATION_FAILED

    def __init__(self, message: str, *, detail: str = "", fields: tuple[FieldProblem, ...] = ()) -> None:
        super().__init__(message, detail=detail)
        # Where the request breaks its route's schema, one entry per field (the answer's `fields`).
        self.fields = fields


@dataclass(frozen=True)
class FieldProblem:
    """One field of a refused request: a JSON pointer (/body/title, /path/id, /query/page) and the reason."""

    pointer: str
    reason: str


class Unauthorized(ArcanaError):
    code = ErrorCode.UNAUTHORIZED


class TokenExpired(Unauthorized):
    code = ErrorCode.TOKEN_EXPIRED


class InvalidCredentials(Unauthorized):
    code = ErrorCode.INVALID_CREDENTIALS


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

    def __init__(self, message: str, *, retry_after: float, limit: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = _whole_seconds(retry_after)
        # The limit that refused the call (for the RateLimit-* headers); None for the login limiter.
        self.limit = limit


class PluginTimeout(ArcanaError):
    code = ErrorCode.PLUGIN_TIMEOUT


class ServiceUnavailable(ArcanaError):
    code = ErrorCode.SERVICE_UNAVAILABLE

    def __init__(self, message: str, *, retry_after: float | None = None, detail: str = "") -> None:
        super().__init__(message, detail=detail)
        self.retry_after = None if retry_after is None else _whole_seconds(retry_after)


class CircuitOpen(ServiceUnavailable):
    """An open circuit breaker refused the call before it ran (``arcana.resilience.breaker``)."""


class BackendUnreachable(ServiceUnavailable):
    """The backend could not be reached (a connection refused, no pooled connection): nothing was sent.

    The one backend failure that proves a write did not happen, so it is safe to retry
    (``arcana.resilience.guard``).
    """


class PluginFailed(ArcanaError):
    code = ErrorCode.PLUGIN_FAILED


class InternalError(ArcanaError):
    """A kernel bug: the client learns only that it happened; the log has the trace."""

    code = ErrorCode.INTERNAL

    def __init__(self, message: str = "internal error") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class Problem:
    """One reason a plugin is refused, with the field and the fix."""

    field: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text


class OperatorError(Exception):
    """Something the operator or the plugin author must fix; never shown to a client."""


class ConfigError(OperatorError):
    """Start-up refused: names the file and the key, and what is wrong."""


class PluginLoadError(OperatorError):
    """A plugin file was refused; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[Problem], plugin: str | None = None) -> None:
        self.source = source
        self.plugin = plugin
        self.problems = problems
        who = f"plugin '{plugin}' ({source})" if plugin else source
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{who} refused:\n{lines}")


class ManifestInvalid(OperatorError):
    """A manifest with problems; ``name`` is the plugin's name when it could be read."""

    def __init__(self, problems: list[Problem], name: str | None = None) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems
        self.name = name


class PathTemplateError(OperatorError):
    """A route path template that cannot be served."""


class DescriptorError(OperatorError):
    """Protobuf descriptors that do not parse, resolve or fit a message."""


class WasmFormatError(OperatorError):
    """The bytes are not a well-formed WebAssembly module."""


class FileChanging(OperatorError):
    """The file changed while it was read: a writer is still at work."""


class ModuleRejected(OperatorError):
    """The bytes are not a module this engine can run (invalid, truncated...)."""


class GuestFault(OperatorError):
    """One guest call failed: ``kind`` is trap, timeout, oom or cancelled."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
