"""The kernel's breakers in one place: a board per kind, and what a state change does.

One ``Resilience`` per kernel (never global): ``plugins`` holds one breaker
per plugin name, ``backends`` one per backend (``"database"``,
``"redis:<host:port/db>"``), ``http`` one per outbound host. A state change
anywhere is logged as a WARNING and handed to the listeners, as
``(kind, name, old, new)``; the kernel's listener emits it on the event bus
as ``breaker.opened`` / ``breaker.half_opened`` / ``breaker.closed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from arcana.resilience.breaker import BreakerBoard, BreakerPolicy, BreakerState, CircuitBreaker
from arcana.resilience.retry import RetryPolicy

if TYPE_CHECKING:  # arcana.config imports this package for its policies
    from arcana.config import ResilienceConfig

logger = logging.getLogger("arcana.resilience")
# (kind, name, old, new); called on the thread whose call changed the state; must not block long.
ChangeListener = Callable[[str, str, BreakerState, BreakerState], None]
# The event topic of each new state.
TOPICS = {
    BreakerState.OPEN: "breaker.opened",
    BreakerState.HALF_OPEN: "breaker.half_opened",
    BreakerState.CLOSED: "breaker.closed",
}
# Backends are few and named by the kernel, never by a caller.
MAX_BACKEND_BREAKERS = 64


class Resilience:
    def __init__(
        self,
        plugin_policy: BreakerPolicy,
        backend_policy: BreakerPolicy,
        http_policy: BreakerPolicy,
        retry: RetryPolicy,
        *,
        max_http_breakers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.retry = retry
        self._listeners: tuple[ChangeListener, ...] = ()
        self.plugins = BreakerBoard("plugin", plugin_policy, clock=clock, listener=self._changed)
        self.backends = BreakerBoard(
            "backend", backend_policy, max_breakers=MAX_BACKEND_BREAKERS, clock=clock, listener=self._changed
        )
        self.http = BreakerBoard(
            "http", http_policy, max_breakers=max_http_breakers, clock=clock, listener=self._changed
        )

    @classmethod
    def from_config(cls, config: ResilienceConfig, clock: Callable[[], float] = time.monotonic) -> Resilience:
        return cls(
            config.plugin_breaker.policy(),
            config.backend_breaker.policy(),
            config.http_breaker.policy(),
            config.retry.policy(),
            max_http_breakers=config.max_http_breakers,
            clock=clock,
        )

    def on_change(self, listener: ChangeListener) -> None:
        """Call ``listener(kind, name, old, new)`` on every state change from now on."""
        self._listeners = (*self._listeners, listener)

    def boards(self) -> Iterator[BreakerBoard]:
        yield from (self.plugins, self.backends, self.http)

    def backend(self, name: str) -> CircuitBreaker:
        """The breaker of one backend, made on first use."""
        return self.backends.get(name, what=f"the {name.split(':', 1)[0]} backend")

    def _changed(self, kind: str, name: str, old: BreakerState, new: BreakerState) -> None:
        # A WARNING either way: the recovery is as much the operator's business as the failure.
        logger.warning(
            "circuit breaker %s %s: %s -> %s",
            kind,
            name,
            old.value,
            new.value,
            extra={"breaker_kind": kind, "breaker": name, "old": old.value, "new": new.value},
        )
        for listener in self._listeners:
            try:
                listener(kind, name, old, new)
            except Exception:  # one bad listener must not stop the others or the call that changed the state
                logger.exception("breaker state listener failed for %s %s", kind, name)


def redis_breaker_name(url: str) -> str:
    """``redis:<host>:<port>/<db>``: one breaker per server, never a password in a name or a log."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"redis:{host}:{port}{parts.path or '/0'}"


def event_payload(kind: str, name: str, old: BreakerState, new: BreakerState) -> tuple[str, dict[str, str]]:
    """The kernel event of a state change: (topic, payload)."""
    return TOPICS[new], {"kind": kind, "name": name, "old": old.value, "new": new.value}
