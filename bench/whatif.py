"""What-if variants of the plugin route, for `run.py --what-if` (bench-only prototypes).

Each variant changes one thing in the server under test so that the REST
bench can say where the plugin route's time goes and what a kernel change
would buy. None of this is used by the kernel; the kernel is not edited.

- ``edge-only``: ``InstancePool.call`` returns hello's answer without running
  the guest: the REST edge (Quart route, envelope, output check) alone.
- ``inline``: the guest runs on the event-loop thread (no semaphore wait_for,
  no thread hop, no wall-clock guard; Extism's own timeout still applies).
- ``fastpath``: (adopted by the kernel as ``arcana.edge.plugin_http``; the
  variant now measures the same server as the baseline) an ASGI middleware in front of Quart answers requests that
  match a plugin route straight from the ASGI scope (the same
  ``kernel.core.route_http`` / ``call_http`` / error body as the REST edge), skipping Quart's request
  context, werkzeug routing and Response objects; everything else (404s,
  admin, /health, the native route) still goes through Quart.
- ``fastpath-inline``: both.
- ``threads1``: not a patch; the runner passes ``--set executor.threads=1``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

VARIANTS = ("edge-only", "inline", "fastpath", "fastpath-inline", "threads1")
HELLO_ANSWER = b'{"status":200,"headers":{},"body":{"message":"Hello, x!"}}'

Scope = dict[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]
]


def patch_pool(variant: str) -> None:
    from arcana.executor import InstancePool

    if variant == "edge-only":

        async def canned(self: InstancePool, handler: str, data: bytes, context: Any) -> bytes:
            return HELLO_ANSWER

        InstancePool.call = canned  # type: ignore[method-assign]
    elif variant.endswith("inline"):

        async def inline(self: InstancePool, handler: str, data: bytes, context: Any) -> bytes:
            try:
                instance = self._idle.pop()
            except IndexError:
                instance = self._compiled.instantiate()
            output = instance.call(handler, data, context)
            if not self._retired:
                self._idle.append(instance)
            return output

        InstancePool.call = inline  # type: ignore[method-assign]


class PluginFastPath:
    """ASGI middleware: a request that matches a plugin route never enters Quart."""

    def __init__(self, app: ASGIApp, kernel: Any) -> None:
        self.app = app
        self.kernel = kernel
        self.max_body = kernel.config.server.max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        from arcana.core import request_id
        from arcana.edge.errors import error_response
        from arcana.envelopes import HttpRequest
        from arcana.errors import ArcanaError, PayloadTooLarge

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_path = scope.get("raw_path", b"").split(b"?", 1)[0].decode("latin-1") or scope["path"]
        try:
            match = self.kernel.core.route_http(scope["method"], raw_path)
        except ArcanaError:
            match = None  # 405: answered by the app behind, as are 404s and kernel routes
        if match is None:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = request_id(headers.get("x-request-id", ""))
        try:
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    raise PayloadTooLarge(f"request body is larger than {self.max_body} bytes")
            qs = scope.get("query_string", b"")
            authorization = headers.pop("authorization", "")
            req = HttpRequest(
                method=scope["method"],
                path=scope["path"],
                query=parse_qs(qs.decode("latin-1"), keep_blank_values=True) if qs else {},
                headers=headers,
                body=body,
                request_id=rid,
                traceparent=headers.get("traceparent", ""),
                authorization=authorization,
            )
            out = await self.kernel.core.call_http(match, req)
            status, payload, out_headers = out.status, out.body, out.headers
        except ArcanaError as exc:
            status, payload, out_headers = error_response(exc, rid)
        out_headers["x-request-id"] = rid
        out_headers["content-length"] = str(len(payload))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out_headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def wrap_app(variant: str, app: Any, kernel: Any) -> Any:
    """The ASGI callable to serve for ``variant`` (the Quart app itself unless fastpath)."""
    from arcana.edge.plugin_http import PluginHttpEdge

    if variant.startswith("fastpath") and not isinstance(app, PluginHttpEdge):
        return PluginFastPath(app, kernel)
    return app
