"""Retries for backend calls: exponential backoff with jitter, bounded in attempts and in total time.

Only the caller knows which failures are safe to repeat (a read, an
idempotent write, a connection refused before anything was sent), so it
passes ``retryable``; everything else is raised at once. A retry never
outlives the caller's deadline: a wait that would end past it, or past
``max_total_s`` from the first attempt, is not taken and the last error is
raised instead. Plugin calls are never retried here (a handler may not be
idempotent); only the kernel's own calls to its backends are.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter

T = TypeVar("T")
logger = logging.getLogger("arcana.resilience")
# Process-wide metric objects are the accepted exception to "no global state": Prometheus collects them.
RETRIES = Counter("arcana_retries_total", "Backend calls retried after a transient failure", ["target"])


@dataclass(frozen=True)
class RetryPolicy:
    # Attempts in all, the first included (1: no retry).
    max_attempts: int = 3
    # Wait before retry n: min(max_delay_s, base_delay_s * 2**(n-1)), less up to `jitter` of it.
    base_delay_s: float = 0.05
    max_delay_s: float = 1.0
    # No retry starts later than this after the first attempt.
    max_total_s: float = 3.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= 20:
            raise ValueError(f"max_attempts must be 1-20, got {self.max_attempts}")
        if not 0 < self.base_delay_s <= self.max_delay_s:
            raise ValueError("base_delay_s must be positive and at most max_delay_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be 0-1, got {self.jitter}")
        if self.max_total_s <= 0:
            raise ValueError(f"max_total_s must be positive, got {self.max_total_s}")

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        full: float = min(self.max_delay_s, self.base_delay_s * 2.0 ** (retry - 1))
        return full - rng() * self.jitter * full


NO_RETRY = RetryPolicy(max_attempts=1)


def _next_wait(
    policy: RetryPolicy,
    attempt: int,
    exc: BaseException,
    retryable: Callable[[BaseException], bool],
    started: float,
    now: float,
    deadline: float | None,
    rng: Callable[[], float],
    target: str,
) -> float | None:
    """The wait before the next attempt (counted and logged as a retry), or None when the error must be raised now."""
    if attempt >= policy.max_attempts or not retryable(exc):
        return None
    wait = policy.delay(attempt, rng)
    end = started + policy.max_total_s
    if deadline is not None:
        end = min(end, deadline)
    if now + wait >= end:
        return None
    RETRIES.labels(target).inc()
    logger.info("retrying %s in %.3f s after: %s", target, wait, exc, extra={"attempt": attempt})
    return wait


def retry_call(
    fn: Callable[[], T],
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    *,
    target: str,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call ``fn`` until it returns, a non-retryable error, or the policy's or ``deadline``'s bound."""
    started = clock()
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as exc:
            wait = _next_wait(policy, attempt, exc, retryable, started, clock(), deadline, rng, target)
            if wait is None:
                raise
            sleep(wait)
            attempt += 1


async def retry_call_async(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    *,
    target: str,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
) -> T:
    """``retry_call`` for coroutines: the waits are ``asyncio.sleep``, so the loop keeps serving."""
    started = clock()
    attempt = 1
    while True:
        try:
            return await fn()
        except Exception as exc:
            wait = _next_wait(policy, attempt, exc, retryable, started, clock(), deadline, rng, target)
            if wait is None:
                raise
            await asyncio.sleep(wait)
            attempt += 1
