"""The one table from error codes to HTTP statuses, and the REST error body and headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from arcana.errors import ArcanaError, ErrorCode, FieldProblem, MethodNotAllowed, RateLimited, ValidationFailed

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_FAILED: 400,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CONFLICT: 409,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.PLUGIN_TIMEOUT: 504,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.PLUGIN_FAILED: 500,
    ErrorCode.INTERNAL: 500,
}


def error_body(code: ErrorCode, message: str, request_id: str, fields: tuple[FieldProblem, ...] = ()) -> bytes:
    """The error model's body; ``fields`` (a request that breaks its route's schema) only when there are some."""
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body: dict[str, object] = {"code": code.value, "message": message, "request_id": request_id, "timestamp": stamp}
    if fields:
        body["fields"] = [{"pointer": f.pointer, "reason": f.reason} for f in fields]
    return json.dumps(body).encode()


def error_headers(exc: ArcanaError) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if HTTP_STATUS[exc.code] == 401:  # by code: a plugin's own UNAUTHORIZED gets the challenge too
        headers["www-authenticate"] = "Bearer"
    if isinstance(exc, MethodNotAllowed):
        headers["allow"] = ", ".join(sorted(exc.allowed))
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    if isinstance(exc, RateLimited) and exc.limit is not None:  # IETF draft "RateLimit header fields"
        headers["ratelimit-limit"] = str(exc.limit)
        headers["ratelimit-remaining"] = "0"
        headers["ratelimit-reset"] = str(exc.retry_after)
    return headers


def error_response(exc: ArcanaError, request_id: str) -> tuple[int, bytes, dict[str, str]]:
    """Status, body and headers of the REST answer to ``exc``."""
    headers = error_headers(exc)
    headers["x-request-id"] = request_id
    fields = exc.fields if isinstance(exc, ValidationFailed) else ()
    return HTTP_STATUS[exc.code], error_body(exc.code, exc.message, request_id, fields), headers
