"""The REST edge for plugin routes: plain ASGI in front of the Quart app.

A request whose path a plugin route serves (never one under the kernel's
reserved prefixes) is parsed here straight from the ASGI scope, handed to the
request core and answered, without Quart's request context; every other
request, 404s included, goes on to the Quart app. Measured in bench/
(what-if "fastpath"), Quart's per-request machinery cost a plugin route about
30% of its throughput. This module only parses and serializes: routing,
auth, the call and the catch-all are the core's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from arcana.core import request_id, unexpected
from arcana.edge.errors import error_response
from arcana.edge.http_metrics import ROUTE_KEY, HttpMetrics
from arcana.envelopes import BODILESS_STATUSES, HttpRequest
from arcana.errors import ArcanaError, PayloadTooLarge, ValidationFailed
from arcana.kernel import Kernel
from arcana.manifest import RESERVED_PREFIXES
from arcana.tracing import end_server_span, http_server_span, traceparent_of

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_kernel_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        out[name] = f"{out[name]},{text}" if name in out else text
    return out


def _client(scope: Scope) -> str:
    """The client's address as the server saw it (trusted proxies already applied); "unknown" without one."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _body(receive: Receive, declared: str, limit: int) -> bytes:
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ValidationFailed("the client went away before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return b"".join(chunks)


class PluginHttpEdge:
    def __init__(self, kernel: Kernel, kernel_app: ASGIApp) -> None:
        self._core = kernel.core
        self.kernel_app = kernel_app
        self._limit = kernel.config.server.max_body_bytes
        self._metrics = HttpMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.kernel_app(scope, receive, send)
        # Every REST request, plugin or kernel route, is counted and timed here, once.
        await self._metrics.measure(self._serve, scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if is_kernel_path(scope["path"]):
            return await self.kernel_app(scope, receive, send)
        raw_path = scope.get("raw_path", b"").split(b"?", 1)[0].decode("latin-1") or scope["path"]
        headers = _headers(scope)
        rid = request_id(headers.get("x-request-id", ""))
        span = None
        try:
            await self._core.limit_address(_client(scope))
            match = self._core.route_http(scope["method"], raw_path)
            if match is None:
                return await self.kernel_app(scope, receive, send)  # the kernel app's 404, in the same error model
            scope[ROUTE_KEY] = (match.template.raw, match.target.plugin.name)
            traceparent = headers.get("traceparent", "")
            tracing = self._core.tracing
            if tracing is not None:  # off: no span, and the caller's traceparent goes on as it came
                span = http_server_span(tracing, scope["method"], match.target, rid, traceparent)
                traceparent = traceparent_of(span)
            request = await self._request(scope, receive, headers, rid, traceparent)
            response = await self._core.call_http(match, request)
            status, body, out_headers = response.status, response.body, response.headers
        except ArcanaError as exc:
            status, body, out_headers = error_response(exc, rid)
        except Exception as exc:  # noqa: BLE001  parsing the scope failed: a kernel bug, answered INTERNAL
            status, body, out_headers = error_response(unexpected(exc, rid), rid)
        if span is not None:
            end_server_span(span, "http.response.status_code", status, status >= 500)
        out_headers["x-request-id"] = rid
        if status not in BODILESS_STATUSES:  # a 204 must not carry one, a 304 only the 200's (RFC 9110 8.6)
            out_headers["content-length"] = str(len(body))
        encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": encoded})
        await send({"type": "http.response.body", "body": body})

    async def _request(
        self, scope: Scope, receive: Receive, headers: dict[str, str], rid: str, traceparent: str
    ) -> HttpRequest:
        authorization = headers.pop("authorization", "")
        query = scope.get("query_string", b"")
        return HttpRequest(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(query.decode("latin-1"), keep_blank_values=True) if query else {},
            headers=headers,
            body=await _body(receive, headers.get("content-length", "0"), self._limit),
            request_id=rid,
            traceparent=traceparent,
            authorization=authorization,
            client=_client(scope),
        )
