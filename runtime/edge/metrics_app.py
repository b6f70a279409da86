"""``/metrics`` alone, for `arcana serve --role worker` with ``server.metrics_port`` (it serves nothing else).

A worker-only process has no REST edge, and its job outcomes
(``arcana_jobs_total``, ``arcana_job_seconds``) and plugin call metrics live in
its own registry: without this port nobody could read them. Behind the same
gate as the REST edge's /metrics (``MetricsAccess``); everything else is 404
(405 for another method on /metrics), in the JSON error model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from arcana.core import request_id
from arcana.edge.errors import error_response
from arcana.edge.metrics import MetricsAccess, exposition, kernel_registry
from arcana.errors import ArcanaError, MethodNotAllowed, NotFound
from arcana.kernel import Kernel

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
READS = frozenset({"GET", "HEAD"})


class MetricsOnlyApp:
    """An ASGI app answering ``GET /metrics`` (HTTP only; run it without lifespan)."""

    def __init__(self, kernel: Kernel) -> None:
        self._access = MetricsAccess(kernel.config.server, kernel.authenticate)
        self._registry = kernel_registry(lambda: kernel.jobs.stats(), lambda: kernel.registry.snapshot)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = request_id(headers.get("x-request-id", ""))
        try:
            body = await self._answer(scope, headers.get("authorization", ""))
            status, out = 200, {"content-type": CONTENT_TYPE_LATEST, "x-request-id": rid}
        except ArcanaError as exc:
            status, body, out = error_response(exc, rid)
        out["content-length"] = str(len(body))
        encoded = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in out.items()]
        await send({"type": "http.response.start", "status": status, "headers": encoded})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def _answer(self, scope: Scope, authorization: str) -> bytes:
        if scope["path"] != "/metrics":
            raise NotFound(f"no route for {scope['path']}; this port serves /metrics only")
        if scope["method"] not in READS:
            raise MethodNotAllowed(f"{scope['method']} is not allowed on /metrics; allowed: GET, HEAD", READS)
        self._access.check(authorization)
        return await asyncio.to_thread(exposition, self._registry)
