"""Load shedding for the whole process: at most ``server.max_in_flight`` plugin calls at once.

Every plugin call, REST and gRPC together, passes the request core
(``RequestCore.call_http`` / ``call_grpc``), which counts it here. One past
the limit is refused at once with SERVICE_UNAVAILABLE and Retry-After (503 /
UNAVAILABLE): never queued, so a flood costs the process a counter check per
refused request, not memory and latency for everyone. The per-plugin
bulkheads (executor.py) still bound each plugin inside this limit; this one
bounds the sum, which a thousand plugins each under their own limit could
otherwise make unbounded.

The kernel's own routes (/health, /ready, /metrics, auth, admin) do not count:
a shedding process still answers its health checks and its operator.

Refusals count in ``arcana_shed_total{reason="in_flight"}``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from prometheus_client import Counter

from arcana.errors import ServiceUnavailable

# Process-wide, like every Prometheus metric object: the scrape collects it.
SHED = Counter("arcana_shed_total", "Requests refused at once by load shedding, by reason", ["reason"])
# What a shed caller is told to wait, in seconds: in-flight calls end within their own time limits.
SHED_RETRY_AFTER_S = 1.0

P = ParamSpec("P")
T = TypeVar("T")


class InFlightLimit:
    """A count of the calls in flight, refused past ``limit``; used from the event loop only (no lock)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.limit = limit
        self.count = 0

    def enter(self) -> None:
        """Count one more call, or raise ServiceUnavailable when ``limit`` are in flight already."""
        if self.count >= self.limit:
            SHED.labels("in_flight").inc()
            raise ServiceUnavailable(
                "the server has too many requests in flight; retry shortly", retry_after=SHED_RETRY_AFTER_S
            )
        self.count += 1

    def leave(self) -> None:
        self.count -= 1


class HasInFlight(Protocol):
    in_flight: InFlightLimit


S = TypeVar("S", bound=HasInFlight)


def counted_in_flight(
    call: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Wrap a core method so that each call holds one place of ``self.in_flight`` while it runs."""

    @functools.wraps(call)
    async def counted(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.in_flight.enter()
        try:
            return await call(self, *args, **kwargs)
        finally:
            self.in_flight.leave()

    return counted
