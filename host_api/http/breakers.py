"""The kernel's board of per-host circuit breakers for ``http_fetch``, and what a state change does.

In a kernel the board is ``Kernel.resilience.http``; this builds one for a
capability used alone. It is keyed by host name, so a host that fails for
one plugin fails fast for every plugin; the board is
bounded by ``resilience.max_http_breakers``. A state change is logged and,
when the kernel's bus is given, emitted as a kernel event::

    breaker.opened      {"kind": "http", "name": "api.example.com", "old": "closed", "new": "open"}
    breaker.half_opened {... "new": "half_open"}
    breaker.closed      {... "new": "closed"}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from arcana.config import ResilienceConfig
from arcana.resilience import BreakerBoard, BreakerState
from arcana_host.events import Emitter

logger = logging.getLogger("arcana.resilience")
KIND = "http"
TOPICS = {
    BreakerState.OPEN: "breaker.opened",
    BreakerState.HALF_OPEN: "breaker.half_opened",
    BreakerState.CLOSED: "breaker.closed",
}


def http_breaker_board(
    resilience: ResilienceConfig, bus: Emitter | None = None, clock: Callable[[], float] = time.monotonic
) -> BreakerBoard:
    def changed(kind: str, name: str, old: BreakerState, new: BreakerState) -> None:
        level = logging.WARNING if new is BreakerState.OPEN else logging.INFO
        logger.log(level, "%s breaker for %s: %s -> %s", kind, name, old.value, new.value)
        if bus is not None:
            bus.emit(TOPICS[new], {"kind": kind, "name": name, "old": old.value, "new": new.value})

    return BreakerBoard(
        KIND, resilience.http_breaker.policy(), max_breakers=resilience.max_http_breakers, clock=clock, listener=changed
    )
