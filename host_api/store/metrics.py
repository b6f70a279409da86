"""Prometheus metrics of the store (module-level: one set per process).

Labels are the plugin's name, the host function and the outcome ("ok" or
the lower-case error code) only: never a collection, key or other value a
plugin chooses, which would let a plugin grow the label set without bound.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

from arcana.errors import ArcanaError
from arcana_host.capability import CallContext, HostHandler

OPERATIONS = Counter("arcana_store_operations_total", "Store host-function calls.", ["plugin", "operation", "outcome"])
LATENCY = Histogram(
    "arcana_store_operation_seconds",
    "Time spent in store host functions.",
    ["operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


def metered(operation: str, handler: HostHandler) -> HostHandler:
    """``handler``, counted by outcome and timed."""

    def call(ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        started, outcome = time.perf_counter(), "internal"
        try:
            result = handler(ctx, request)
            outcome = "ok"
            return result
        except ArcanaError as exc:
            outcome = exc.code.value.lower()
            raise
        finally:
            OPERATIONS.labels(ctx.plugin, operation, outcome).inc()
            LATENCY.labels(operation).observe(time.perf_counter() - started)

    return call
