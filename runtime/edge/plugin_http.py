"""The REST edge for plugin routes: plain ASGI in front of the Quart app.

A request whose path a plugin route serves (never one under the kernel's
reserved prefixes) is parsed here straight from the ASGI scope, handed to the
dispatch core and answered, without Quart's request context; every other
request, 404s included, goes on to the Quart app. Measured
in bench/ (what-if "fastpath"), Quart's per-request machinery cost a plugin
route about 30% of its throughput, more than everything else the kernel does
per request. Errors use the same table and body as the rest of the edge.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from arcana.dispatch import call_http, route_http
from arcana.edge.errors import HTTP_STATUS, error_body, error_headers, pick_request_id
from arcana.envelopes import HttpRequest, HttpResponse
from arcana.errors import ArcanaError, ErrorCode, NotFound, PayloadTooLarge, ValidationFailed
from arcana.kernel import Kernel
from arcana.manifest import RESERVED_PREFIXES
from arcana.paths import Match
from arcana.registry import RouteTarget

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("arcana.rest")


def is_kernel_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        out[name] = f"{out[name]},{text}" if name in out else text
    return out


async def _body(receive: Receive, limit: int) -> bytes:
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
        self._kernel = kernel
        self.kernel_app = kernel_app
        self._limit = kernel.config.server.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_kernel_path(scope["path"]):
            return await self.kernel_app(scope, receive, send)
        headers = _headers(scope)
        rid = pick_request_id(headers.get("x-request-id", ""))
        raw_path = scope.get("raw_path", b"").split(b"?", 1)[0].decode("latin-1") or scope["path"]
        try:
            match = route_http(self._kernel.registry.snapshot, scope["method"], raw_path)
        except NotFound:
            return await self.kernel_app(scope, receive, send)  # the kernel app's 404, in the same error model
        except ArcanaError as exc:  # 405 with Allow
            match, failure = None, exc
        try:
            if match is None:
                raise failure
            response = await self._handle(match, scope, receive, headers, rid)
        except ArcanaError as exc:
            response = HttpResponse(HTTP_STATUS[exc.code], error_body(exc.code, exc.message, rid), error_headers(exc))
        except Exception:  # a kernel bug: logged with its trace, the client gets INTERNAL and no trace
            logger.exception("unhandled error", extra={"request_id": rid})
            response = HttpResponse(
                500, error_body(ErrorCode.INTERNAL, "internal error", rid), {"content-type": "application/json"}
            )
        response.headers["x-request-id"] = rid
        response.headers["content-length"] = str(len(response.body))
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    async def _handle(
        self, match: Match[RouteTarget], scope: Scope, receive: Receive, headers: dict[str, str], rid: str
    ) -> HttpResponse:
        principal = self._kernel.auth.authenticate(headers.pop("authorization", ""))
        declared = headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > self._limit:
            raise PayloadTooLarge(f"request body is larger than {self._limit} bytes")
        query = scope.get("query_string", b"")
        req = HttpRequest(
            method=scope["method"],
            path=scope["path"],
            query=parse_qs(query.decode("latin-1"), keep_blank_values=True) if query else {},
            headers=headers,
            body=await _body(receive, self._limit),
            request_id=rid,
            traceparent=headers.get("traceparent", ""),
            principal=principal.as_json() if principal else None,
        )
        return await call_http(match, req, principal)
