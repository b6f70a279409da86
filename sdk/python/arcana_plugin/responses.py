"""What a handler answers: HTTP responses, gRPC replies, job results and errors (docs/envelopes.md).

A route handler returns a :class:`Response` (built with the helpers below)
or any JSON value (a ``200`` with that body), or ``None`` (``204``). Any
handler raises :class:`Fail` to answer with the error model's
``{"error": {"code", "message"}}`` (docs/errors.md)::

    raise Fail(Code.NOT_FOUND, f"no bookmark {id}")
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Fail",
    "Response",
    "bytes_response",
    "created",
    "error_answer",
    "json_response",
    "no_content",
    "not_modified",
    "text",
]

# Statuses that carry no body by definition (RFC 9110): a body given with them is the author's bug.
BODYLESS = frozenset({204, 304})


class Fail(Exception):
    """Answer with an error of the error model: ``code`` (a :class:`~arcana_plugin.Code`) and ``message``.

    Raised anywhere in a handler (or by ``Result.unwrap()`` for a host call's error, which keeps that
    error's code); the dispatcher turns it into the answer, so the client gets the code's status.
    """

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        self.message = message if message is not None else code
        super().__init__(f"{self.code}: {self.message}")

    def answer(self) -> dict[str, Any]:
        return error_answer(self.code, self.message)


def error_answer(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


_NO_BODY: Any = object()


@dataclass(frozen=True)
class Response:
    """An HTTP answer: ``status`` (200-599), ``headers`` (lower-cased), then a JSON ``body`` or raw ``data``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = _NO_BODY
    data: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.status, int) or not 200 <= self.status <= 599:
            raise ValueError(f"an HTTP status must be an integer 200-599, got {self.status!r}")
        has_body = self.body is not _NO_BODY or self.data is not None
        if self.status in BODYLESS and has_body:
            raise ValueError(f"a {self.status} response has no body")
        if self.body is not _NO_BODY and self.data is not None:
            raise ValueError("a response has a JSON body or raw data, not both")

    @property
    def has_body(self) -> bool:
        return self.body is not _NO_BODY or self.data is not None

    def answer(self) -> dict[str, Any]:
        """The envelope answer the kernel reads."""
        out: dict[str, Any] = {"status": self.status}
        if self.headers:
            out["headers"] = {name.lower(): str(value) for name, value in self.headers.items()}
        if self.body is not _NO_BODY:
            out["body"] = self.body
        elif self.data is not None:
            out["body_base64"] = base64.b64encode(self.data).decode("ascii")
        return out


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """``body`` as JSON (``content-type: application/json`` unless ``headers`` set one)."""
    return Response(status, dict(headers or {}), body)


def created(body: Any, location: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """``201 Created``, with ``location`` when given."""
    extra = dict(headers or {})
    if location is not None:
        extra["location"] = location
    return Response(201, extra, body)


def no_content(headers: dict[str, str] | None = None) -> Response:
    """``204 No Content``: never a body."""
    return Response(204, dict(headers or {}))


def not_modified(headers: dict[str, str] | None = None) -> Response:
    """``304 Not Modified`` (e.g. with an ``etag``): never a body."""
    return Response(304, dict(headers or {}))


def text(value: str, status: int = 200, content_type: str = "text/plain; charset=utf-8") -> Response:
    """A text body (sent as bytes with ``content_type``)."""
    return Response(status, {"content-type": content_type}, data=value.encode("utf-8"))


def bytes_response(data: bytes, status: int = 200, content_type: str = "application/octet-stream") -> Response:
    """Raw bytes with ``content_type``."""
    return Response(status, {"content-type": content_type}, data=bytes(data))
