"""Envelopes: the one JSON shape a handler receives, and the one it returns.

The envelope contract is documented for plugin authors in sdk/README.md.
Building and checking them is independent of any transport, so the REST and
gRPC edges (and later jobs and events) share it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from arcana import jsonio
from arcana.errors import ArcanaError, ErrorCode, PluginFailed, ServiceUnavailable, ValidationFailed

# Codes a plugin may return; anything else is a plugin bug, not a client error.
PLUGIN_CODES = frozenset(c.value for c in ErrorCode)
# Seconds a client should wait after a plugin answered SERVICE_UNAVAILABLE without saying (every 503 carries one).
PLUGIN_RETRY_AFTER_S = 1
# Said to the operator (never the client) when an output is not an envelope at all: the usual cause is a
# plain Extism module routed with the default ABI, which answers its own bytes.
RAW_HINT = 'if this is a plain Extism module, set abi = "raw" on its [[route]] or [[grpc]] (README, "Drop a plugin in")'
# Statuses that never carry a body (RFC 9110 15.3.5, 15.4.5): whatever a plugin wrote, none is sent.
BODILESS_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    request_id: str
    traceparent: str = ""
    # The raw `Authorization` header: the core authenticates it; it never reaches a plugin.
    authorization: str = ""
    # The client's address (after trusted proxies): the rate-limit key of an anonymous caller.
    client: str = ""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


# ``http_envelope``'s ``body_value`` when the edge has not parsed the body (no schema checked it).
UNPARSED: Any = object()


def http_envelope(
    req: HttpRequest,
    route: str,
    params: dict[str, str],
    principal: dict[str, Any] | None = None,
    traceparent: str | None = None,
    body_value: Any = UNPARSED,
) -> bytes:
    """``traceparent``: the call's own (its span's, with tracing on); the request's when not given.

    ``body_value``: the JSON body as the route's schema check already parsed it (the same parser), so a
    checked body is parsed once, not twice.
    """
    envelope: dict[str, Any] = {
        "kind": "http",
        "method": req.method,
        "path": req.path,
        "route": route,
        "params": params,
        "query": req.query,
        "headers": req.headers,
        "principal": principal,
        "request_id": req.request_id,
        "traceparent": req.traceparent if traceparent is None else traceparent,
    }
    if req.body:
        if is_json_type(req.headers.get("content-type", "")):
            if body_value is UNPARSED:
                body_value = jsonio.client_json(req.body, req.headers.get("content-encoding", ""))
            envelope["body"] = body_value
        else:
            envelope["body_base64"] = base64.b64encode(req.body).decode("ascii")
    try:
        return jsonio.encode(envelope)
    except jsonio.JsonRejected as exc:  # only the client's body can be deep enough to refuse
        raise ValidationFailed(f"request body is not valid JSON: {exc}") from None


def parse_http_output(plugin: str, output: bytes) -> HttpResponse:
    """Check a handler's output against the http response schema."""
    data = _json_object(plugin, output)
    if "error" in data:
        raise plugin_error(plugin, data["error"])
    unknown = set(data) - {"status", "headers", "body", "body_base64"}
    if unknown:
        raise _not_envelope(plugin, f"unknown response fields {sorted(unknown)}")
    status = data.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
        raise _bad(plugin, f"status must be an integer 200-599, got {status!r}")
    headers = data.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise _bad(plugin, "headers must be an object of strings")
    headers = {k.lower(): v for k, v in headers.items()}
    if "body_base64" in data:
        try:
            body = base64.b64decode(data["body_base64"], validate=True)
        except (ValueError, TypeError) as exc:
            raise _bad(plugin, "body_base64 is not valid base64") from exc
        headers.setdefault("content-type", "application/octet-stream")
    elif "body" in data:
        try:
            body = jsonio.encode(data["body"])
        except jsonio.JsonRejected as exc:
            raise _bad(plugin, f"body: {exc}") from None
        headers.setdefault("content-type", "application/json")
    else:
        body = b""
    if status in BODILESS_STATUSES:
        # A body here would be read by the client as the start of the next response on the connection.
        body = b""
        headers.pop("content-type", None)
        headers.pop("content-length", None)
    return HttpResponse(status, body, headers)


def grpc_envelope(
    method: str,
    message: dict[str, Any],
    metadata: dict[str, str],
    request_id: str,
    traceparent: str,
    principal: dict[str, Any] | None = None,
) -> bytes:
    envelope = {
        "kind": "grpc",
        "method": method,
        "message": message,
        "metadata": metadata,
        "principal": principal,
        "request_id": request_id,
        "traceparent": traceparent,
    }
    return jsonio.encode(envelope)  # msgspec: 0.3 us where json.dumps took 4.3 us


def parse_grpc_output(plugin: str, output: bytes) -> Any:
    """The handler's reply message (proto3 JSON), or its error raised."""
    data = _json_object(plugin, output)
    if "error" in data:
        raise plugin_error(plugin, data["error"])
    if set(data) != {"message"} or not isinstance(data["message"], dict):
        raise _not_envelope(plugin, 'a gRPC reply must be {"message": {...}}')
    return data["message"]


def plugin_error(plugin: str, error: Any) -> ArcanaError:
    """An error the plugin returned on purpose, kept in the public model."""
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return _bad(plugin, "error must be an object with a string code")
    code, message = error["code"], error.get("message", "")
    if code not in PLUGIN_CODES or not isinstance(message, str):
        return _bad(plugin, f"unknown error code {code!r}")
    if code == ErrorCode.SERVICE_UNAVAILABLE:
        return ServiceUnavailable(message or code, retry_after=PLUGIN_RETRY_AFTER_S)
    return ArcanaError(message or code, code=ErrorCode(code))


def _json_object(plugin: str, output: bytes) -> dict[str, Any]:
    """A plugin's output, parsed as strictly as a client's input (it is as untrusted)."""
    try:
        data = jsonio.decode(output)
    except jsonio.JsonRejected as exc:
        raise _not_envelope(plugin, f"output is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _not_envelope(plugin, "output must be a JSON object")
    return data


def _bad(plugin: str, why: str) -> PluginFailed:
    return PluginFailed(f"plugin '{plugin}' returned a malformed response", detail=why)


def _not_envelope(plugin: str, why: str) -> PluginFailed:
    """Not the envelope's shape at all: the detail (the operator's log line) says what to try."""
    return _bad(plugin, f"{why}; {RAW_HINT}")
