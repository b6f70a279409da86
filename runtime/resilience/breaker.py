"""Circuit breakers: closed, open, half-open, and a bounded board of them by name.

A breaker counts consecutive failures while closed; at ``failure_threshold``
it opens and refuses every call at once with SERVICE_UNAVAILABLE and a
``Retry-After`` of the cool-down left. When the cool-down has passed it is
half-open: up to ``half_open_probes`` calls go through as probes; that many
successes close it, one failure opens it again for another cool-down.

Callers take a ``Permit`` before the protected work and settle it exactly
once: ``success()``, ``failure()``, or ``release()`` when the outcome says
nothing about the dependency (a caller's own bad input, a cancellation). A
probe that is never settled would wedge a half-open breaker, so a probe
older than the cool-down stops counting against the probe limit.

Breakers are used from the event loop and from plugin threads alike, so
each guards its few fields with a lock; the hot path (closed, no failures)
is one lock round and two comparisons.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from arcana.errors import CircuitOpen

logger = logging.getLogger("arcana.resilience")


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    # Consecutive failures that open a closed breaker.
    failure_threshold: int = 5
    # How long an open breaker refuses before it lets probes through.
    cool_down_s: float = 10.0
    # Probes let through at once while half-open, and successes needed to close.
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {self.failure_threshold}")
        if not 0 < self.cool_down_s <= 86_400:
            raise ValueError(f"cool_down_s must be in (0, 86400], got {self.cool_down_s}")
        if self.half_open_probes < 1:
            raise ValueError(f"half_open_probes must be at least 1, got {self.half_open_probes}")


# (breaker name, old state, new state): called outside the breaker's lock, must not raise.
StateListener = Callable[[str, BreakerState, BreakerState], None]


class Permit:
    """One admitted call; settle it once. Settling twice is a no-op, so ``finally: permit.release()`` is safe."""

    __slots__ = ("_breaker", "_probe", "_settled")

    def __init__(self, breaker: CircuitBreaker, probe: int) -> None:
        # 0 for a call admitted while closed; else the probe's own token (see CircuitBreaker._probes).
        self._breaker = breaker
        self._probe = probe
        self._settled = False

    def success(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._settle(self._probe, ok=True)

    def failure(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._settle(self._probe, ok=False)

    def release(self) -> None:
        """Neither outcome: the call told nothing about the dependency's health."""
        if not self._settled:
            self._settled = True
            self._breaker._settle(self._probe, ok=None)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy,
        *,
        what: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        listener: StateListener | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        # How a refusal names the dependency: "plugin 'notes'", "host api.example.com".
        self.what = what or name
        self._clock = clock
        self._listener = listener
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        # Probes in flight: token -> start time. A token belongs to one half-open round, so a probe
        # left over from an earlier round settles nothing in a later one.
        self._probes: dict[int, float] = {}
        self._next_token = 1
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose cool-down has passed reads as half-open)."""
        with self._lock:
            return self._current(self._clock())

    def retry_after(self) -> float:
        """Seconds until an open breaker lets a probe through; 0 when it is not open."""
        with self._lock:
            now = self._clock()
            if self._current(now) is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.policy.cool_down_s - now)

    def refuse_if_open(self) -> None:
        """CircuitOpen while open, else nothing: a check that takes no permit, for callers that never settle.

        Such a caller neither counts nor uses a half-open probe (the kernel's
        auth queries share the database's breaker this way, via its connects).
        """
        wait = self.retry_after()
        if wait > 0:
            raise CircuitOpen(
                f"{self.what} is failing; calls are refused for now (circuit open)", retry_after=max(1, math.ceil(wait))
            )

    def admit(self) -> Permit:
        """A permit for one call, or SERVICE_UNAVAILABLE with Retry-After while open (or out of probes)."""
        changed: tuple[BreakerState, BreakerState] | None = None
        with self._lock:
            now = self._clock()
            before = self._state
            state = self._current(now)
            if state is BreakerState.HALF_OPEN and before is BreakerState.OPEN:
                self._state = state
                self._probe_successes = 0
                self._probes.clear()
                changed = (before, state)
            if state is BreakerState.CLOSED:
                permit = Permit(self, probe=0)
            elif state is BreakerState.HALF_OPEN and self._probe_slot(now):
                token = self._next_token
                self._next_token += 1
                self._probes[token] = now
                permit = Permit(self, probe=token)
            else:
                wait = self._opened_at + self.policy.cool_down_s - now if state is BreakerState.OPEN else 0.0
                permit = None
        if changed is not None:
            self._notify(*changed)
        if permit is None:
            raise CircuitOpen(
                f"{self.what} is failing; calls are refused for now (circuit open)",
                retry_after=max(1, math.ceil(wait)),
            )
        return permit

    def call(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` under a permit: any exception is a failure (use permits directly to classify)."""
        permit = self.admit()
        try:
            result = fn()
        except BaseException:
            permit.failure()
            raise
        permit.success()
        return result

    def _current(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now >= self._opened_at + self.policy.cool_down_s:
            return BreakerState.HALF_OPEN
        return self._state

    def _probe_slot(self, now: float) -> bool:
        # A probe older than the cool-down was never settled (lost, or a very slow call): stop counting it.
        stale = now - self.policy.cool_down_s
        self._probes = {token: t for token, t in self._probes.items() if t > stale}
        return len(self._probes) < self.policy.half_open_probes

    def _settle(self, token: int, ok: bool | None) -> None:
        changed: tuple[BreakerState, BreakerState] | None = None
        with self._lock:
            now = self._clock()
            # A probe counts only while its round lasts: its token is gone once the breaker moved on.
            probe = token != 0 and self._probes.pop(token, None) is not None
            state = self._current(now)
            if ok is None:
                pass
            elif state is BreakerState.CLOSED and token == 0:
                if ok:
                    self._failures = 0
                else:
                    self._failures += 1
                    if self._failures >= self.policy.failure_threshold:
                        changed = self._open(now, state)
            elif state is BreakerState.HALF_OPEN and probe:
                if not ok:
                    changed = self._open(now, state)
                else:
                    self._probe_successes += 1
                    if self._probe_successes >= self.policy.half_open_probes:
                        self._state = BreakerState.CLOSED
                        self._failures = 0
                        self._probes.clear()
                        changed = (state, BreakerState.CLOSED)
            # A call admitted before the breaker opened, or a probe of a round that is over, says nothing new.
        if changed is not None:
            self._notify(*changed)

    def _open(self, now: float, before: BreakerState) -> tuple[BreakerState, BreakerState]:
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._failures = 0
        self._probes.clear()
        self._probe_successes = 0
        return (before, BreakerState.OPEN)

    def _notify(self, old: BreakerState, new: BreakerState) -> None:
        if self._listener is not None:
            try:
                self._listener(self.name, old, new)
            except Exception:  # a listener's bug is logged, never raised into the call whose outcome changed the state
                logger.exception("breaker listener failed for %s", self.name)


class BreakerBoard:
    """Breakers by name, made on first use, at most ``max_breakers`` of them.

    Names can come from outside (an outbound host a plugin asks for), so the
    board is bounded: past the bound the least recently used closed breaker
    is forgotten. Open and half-open ones are kept, since forgetting them
    would reopen the gate to a failing dependency; if every one is open the
    oldest is dropped all the same, the bound wins.
    """

    def __init__(
        self,
        kind: str,
        policy: BreakerPolicy,
        *,
        max_breakers: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        listener: Callable[[str, str, BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if max_breakers < 1:
            raise ValueError("max_breakers must be at least 1")
        self.kind = kind
        self.policy = policy
        self._max = max_breakers
        self._clock = clock
        self._listener = listener
        self._lock = threading.Lock()
        self._breakers: OrderedDict[str, CircuitBreaker] = OrderedDict()

    def get(self, name: str, policy: BreakerPolicy | None = None, what: str | None = None) -> CircuitBreaker:
        """The breaker for ``name``; ``policy`` applies when it is made (a per-plugin override)."""
        with self._lock:
            breaker = self._breakers.get(name)
            if breaker is not None and (policy is None or breaker.policy == policy):
                self._breakers.move_to_end(name)
                return breaker
            breaker = CircuitBreaker(name, policy or self.policy, what=what, clock=self._clock, listener=self._forward)
            self._breakers[name] = breaker
            self._breakers.move_to_end(name)
            while len(self._breakers) > self._max:
                self._evict_one()
            return breaker

    def make(self, name: str, policy: BreakerPolicy | None = None, what: str | None = None) -> CircuitBreaker:
        """A fresh breaker wired to this board's clock and listener, not on the board until ``adopt``.

        For a plugin version being loaded: it gets its own closed breaker, which
        replaces the serving version's only once the new version is installed.
        """
        return CircuitBreaker(name, policy or self.policy, what=what, clock=self._clock, listener=self._forward)

    def adopt(self, breaker: CircuitBreaker) -> None:
        """Put ``breaker`` on the board under its name, replacing any other."""
        with self._lock:
            self._breakers[breaker.name] = breaker
            self._breakers.move_to_end(breaker.name)
            while len(self._breakers) > self._max:
                self._evict_one()

    def forget(self, name: str) -> None:
        with self._lock:
            self._breakers.pop(name, None)

    def states(self) -> dict[str, BreakerState]:
        with self._lock:
            breakers = list(self._breakers.items())
        return {name: b.state for name, b in breakers}

    def __len__(self) -> int:
        return len(self._breakers)

    def __iter__(self) -> Iterator[CircuitBreaker]:
        with self._lock:
            return iter(list(self._breakers.values()))

    def _evict_one(self) -> None:
        for name, breaker in self._breakers.items():
            if breaker.state is BreakerState.CLOSED:
                del self._breakers[name]
                return
        self._breakers.popitem(last=False)

    def _forward(self, name: str, old: BreakerState, new: BreakerState) -> None:
        if self._listener is not None:
            self._listener(self.kind, name, old, new)
