"""The envelopes a handler gets (docs/envelopes.md), as dataclasses.

``parse(input)`` reads the kernel's JSON into one of :class:`HttpRequest`,
:class:`GrpcRequest`, :class:`JobRequest` or :class:`EventRequest`. Fields
the kernel leaves out take their documented default, so a handler never
meets a ``KeyError``; a malformed envelope (not a JSON object, an unknown
``kind``) raises :class:`EnvelopeError`, which the dispatcher lets trap: it
is a kernel/SDK mismatch, not a client error.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .contract import Code
from .responses import Fail

__all__ = [
    "Envelope",
    "EnvelopeError",
    "Event",
    "EventRequest",
    "GrpcRequest",
    "HttpRequest",
    "Job",
    "JobRequest",
    "Principal",
    "parse",
]


class EnvelopeError(ValueError):
    """The input is not an envelope this SDK knows."""


@dataclass(frozen=True)
class Principal:
    """The verified caller: subject and roles."""

    sub: str
    roles: tuple[str, ...] = ()

    def has_role(self, role: str) -> bool:
        return role in self.roles


_ABSENT: Any = object()


@dataclass(frozen=True)
class HttpRequest:
    """A ``[[route]]`` call. ``body`` is the parsed JSON body (``None`` when there is none or it is not JSON)."""

    method: str
    path: str
    route: str = ""
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    principal: Principal | None = None
    request_id: str = ""
    traceparent: str = ""
    body: Any = None
    # The raw bytes of a non-JSON body (the envelope's body_base64), else None.
    body_bytes: bytes | None = None
    has_json_body: bool = False
    kind: str = "http"

    def param(self, name: str) -> str:
        """The path parameter ``{name}``; a route template without it is the author's bug (KeyError)."""
        return self.params[name]

    def query_first(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name`` (``?tag=a&tag=b``: ``a``)."""
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:
        """The JSON body; no JSON body is the client's error (VALIDATION_FAILED), raised as :class:`Fail`."""
        if not self.has_json_body:
            raise Fail(Code.VALIDATION_FAILED, "a JSON body is required (content-type: application/json)")
        return self.body

    def json_object(self) -> dict[str, Any]:
        """The JSON body, which must be an object (VALIDATION_FAILED otherwise)."""
        body = self.json()
        if not isinstance(body, dict):
            raise Fail(Code.VALIDATION_FAILED, "the body must be a JSON object")
        return body


@dataclass(frozen=True)
class GrpcRequest:
    """A ``[[grpc]]`` call: the request message in proto3 JSON (lowerCamelCase field names)."""

    method: str
    message: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    principal: Principal | None = None
    request_id: str = ""
    traceparent: str = ""
    kind: str = "grpc"


@dataclass(frozen=True)
class Job:
    id: str
    type: str
    payload: Any = None
    attempt: int = 1
    priority: str = "normal"


@dataclass(frozen=True)
class JobRequest:
    """A ``[[job]]`` delivery. Delivered at least once: make the handler idempotent."""

    job: Job
    request_id: str = ""
    traceparent: str = ""
    kind: str = "job"


@dataclass(frozen=True)
class Event:
    id: str
    topic: str
    source: str = ""
    time: float = 0.0
    payload: Any = None
    # The acting user's id, or None.
    principal: str | None = None


@dataclass(frozen=True)
class EventRequest:
    """A ``[[subscribe]]`` delivery. Delivered at least once: make the handler idempotent."""

    event: Event
    request_id: str = ""
    traceparent: str = ""
    kind: str = "event"


Envelope = HttpRequest | GrpcRequest | JobRequest | EventRequest


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _principal(value: Any) -> Principal | None:
    if not isinstance(value, dict) or not isinstance(value.get("sub"), str):
        return None
    roles = value.get("roles")
    return Principal(value["sub"], tuple(str(r) for r in roles) if isinstance(roles, list) else ())


def _http(data: dict[str, Any]) -> HttpRequest:
    query = data.get("query")
    body_bytes = None
    if isinstance(data.get("body_base64"), str):
        body_bytes = base64.b64decode(data["body_base64"])
    return HttpRequest(
        method=str(data.get("method", "")),
        path=str(data.get("path", "")),
        route=str(data.get("route", "")),
        params=_str_map(data.get("params")),
        query={str(k): [str(x) for x in v] for k, v in query.items() if isinstance(v, list)}
        if isinstance(query, dict)
        else {},
        headers=_str_map(data.get("headers")),
        principal=_principal(data.get("principal")),
        request_id=str(data.get("request_id", "")),
        traceparent=str(data.get("traceparent") or ""),
        body=data.get("body"),
        body_bytes=body_bytes,
        has_json_body="body" in data,
    )


def _grpc(data: dict[str, Any]) -> GrpcRequest:
    message = data.get("message")
    return GrpcRequest(
        method=str(data.get("method", "")),
        message=message if isinstance(message, dict) else {},
        metadata=_str_map(data.get("metadata")),
        principal=_principal(data.get("principal")),
        request_id=str(data.get("request_id", "")),
        traceparent=str(data.get("traceparent") or ""),
    )


def _job(data: dict[str, Any]) -> JobRequest:
    job = data.get("job")
    if not isinstance(job, dict):
        raise EnvelopeError("a job envelope without a job object")
    return JobRequest(
        job=Job(
            id=str(job.get("id", "")),
            type=str(job.get("type", "")),
            payload=job.get("payload"),
            attempt=int(job.get("attempt", 1)),
            priority=str(job.get("priority", "normal")),
        ),
        request_id=str(data.get("request_id", "")),
        traceparent=str(data.get("traceparent") or ""),
    )


def _event(data: dict[str, Any]) -> EventRequest:
    event = data.get("event")
    if not isinstance(event, dict):
        raise EnvelopeError("an event envelope without an event object")
    principal = event.get("principal")
    return EventRequest(
        event=Event(
            id=str(event.get("id", "")),
            topic=str(event.get("topic", "")),
            source=str(event.get("source", "")),
            time=float(event.get("time", 0.0)),
            payload=event.get("payload"),
            principal=principal if isinstance(principal, str) else None,
        ),
        request_id=str(data.get("request_id", "")),
        traceparent=str(data.get("traceparent") or ""),
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Envelope]] = {"http": _http, "grpc": _grpc, "job": _job, "event": _event}


def parse(raw: bytes) -> Envelope:
    """The envelope in ``raw`` (the JSON the kernel hands a handler)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise EnvelopeError(f"the input is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnvelopeError("the input is not a JSON object")
    parser = _PARSERS.get(str(data.get("kind")))
    if parser is None:
        raise EnvelopeError(f"unknown envelope kind {data.get('kind')!r}")
    return parser(data)
