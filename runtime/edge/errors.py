"""The one table from error codes to HTTP statuses, and the REST error body."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime

from arcana.errors import ArcanaError, ErrorCode, MethodNotAllowed

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


REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNAUTHENTICATED = (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.INVALID_CREDENTIALS)


def pick_request_id(given: str) -> str:
    """The caller's request id when it is a sane token, else a fresh one."""
    return given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def error_body(code: ErrorCode, message: str, request_id: str) -> bytes:
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"code": code.value, "message": message, "request_id": request_id, "timestamp": stamp}).encode()


def error_headers(exc: ArcanaError) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if exc.code in UNAUTHENTICATED:
        headers["www-authenticate"] = "Bearer"
    if isinstance(exc, MethodNotAllowed):
        headers["allow"] = ", ".join(sorted(exc.allowed))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(int(retry_after))
    return headers
