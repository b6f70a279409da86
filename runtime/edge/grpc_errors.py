"""The one table from error codes to gRPC status codes."""

from __future__ import annotations

import grpc

from arcana.errors import ArcanaError, ErrorCode, VersionConflict

GRPC_STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.VALIDATION_FAILED: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.UNAUTHORIZED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.TOKEN_EXPIRED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.INVALID_CREDENTIALS: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.METHOD_NOT_ALLOWED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorCode.CONFLICT: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.PLUGIN_TIMEOUT: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.SERVICE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.PLUGIN_FAILED: grpc.StatusCode.INTERNAL,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}


def grpc_status(exc: ArcanaError) -> grpc.StatusCode:
    if isinstance(exc, VersionConflict):
        return grpc.StatusCode.ABORTED
    return GRPC_STATUS[exc.code]


def status_message(exc: ArcanaError) -> str:
    """`CODE: message`, so clients keep the model's code beside gRPC's coarser one."""
    return f"{exc.code.value}: {exc.message}"
