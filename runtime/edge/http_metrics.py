"""REST request metrics, recorded once per request where every REST request enters and ends.

::

    arcana_http_requests_total{method,route,status,plugin}          requests answered
    arcana_http_request_duration_seconds{method,route,plugin}       time to the end of the answer

``route`` is the route's template (``/api/v1/notes/{id}``, ``/api/v1/admin/plugins/{name}``),
never the requested path: whichever app routed the request writes it into the ASGI scope under
``ROUTE_KEY`` (the plugin edge for plugin routes, the kernel app for its own). A request no
route took (a 404, a 405, or one refused before routing, e.g. by the per-address limit) is
``<unmatched>``, so a scanner walking random paths adds no series. ``plugin`` is the plugin
that serves the route, empty on the kernel's own routes. ``method`` is one of the standard
methods or ``OTHER``: a client picks the method token too.

Requests the HTTP layer refuses before the app sees them (431, 414, 408, the connection cap:
``arcana.edge.http_protocol``) are not counted here.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import Counter, Histogram

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The scope key a router sets to (route template, plugin name) once it has matched the request.
ROUTE_KEY = "arcana.route"
UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
KERNEL = ""  # the plugin label of the kernel's own routes
# Process-wide metric objects, as in arcana.executor: Prometheus collects them from its registry.
REQUESTS = Counter(
    "arcana_http_requests_total",
    "REST requests answered, by route template and status",
    ["method", "route", "status", "plugin"],
)
DURATION = Histogram(
    "arcana_http_request_duration_seconds",
    "REST request time until the answer was sent, by route template",
    ["method", "route", "plugin"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_WERKZEUG_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")


@functools.lru_cache(maxsize=256)
def kernel_template(rule: str) -> str:
    """A werkzeug rule (``/api/v1/admin/plugins/<name>``) in the plugins' template syntax (``.../{name}``)."""
    return _WERKZEUG_PARAM.sub(r"{\1}", rule)


class HttpMetrics:
    """Times and counts each request; label children are kept per series so a request costs two dict hits."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, str, str, int], Any] = {}
        self._durations: dict[tuple[str, str, str], Any] = {}

    async def measure(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` on one HTTP request and record it; a request the app raised on counts as 500."""
        started = self._clock()
        status = 500

        async def send_seen(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_seen)
        finally:
            self.record(scope, status, self._clock() - started)

    def record(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        route, plugin = scope.get(ROUTE_KEY) or (UNMATCHED, KERNEL)
        series = (method, route, plugin)
        duration = self._durations.get(series)
        if duration is None:
            duration = self._durations[series] = DURATION.labels(method, route, plugin)
        duration.observe(seconds)
        key = (method, route, plugin, status)
        count = self._counts.get(key)
        if count is None:
            count = self._counts[key] = REQUESTS.labels(method, route, str(status), plugin)
        count.inc()
