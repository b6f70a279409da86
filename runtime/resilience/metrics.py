"""``arcana_breaker_state{kind,name,state}``: every breaker's state, read from the boards at scrape time.

The Prometheus enum convention: one series per possible state, 1 for the
current one and 0 for the others, so ``arcana_breaker_state{state="open"} == 1``
finds every open breaker and a state change never leaves a stale series.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from arcana.resilience.breaker import BreakerState
from arcana.resilience.service import Resilience


class BreakerStates(Collector):
    def __init__(self, resilience: Resilience) -> None:
        self._resilience = resilience

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "arcana_breaker_state",
            "Circuit breaker state (1 for the current state): kind plugin, backend or http",
            labels=["kind", "name", "state"],
        )
        for board in self._resilience.boards():
            for name, current in sorted(board.states().items()):
                for state in BreakerState:
                    gauge.add_metric([board.kind, name, state.value], 1.0 if state is current else 0.0)
        yield gauge


def breaker_registry(resilience: Resilience) -> CollectorRegistry:
    """A registry of one kernel's breaker states, kept beside the process registry (never global)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BreakerStates(resilience))
    return registry
