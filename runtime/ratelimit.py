"""Request rate limits: a fixed window per key, in process or shared through Redis.

A ``Rate`` is ``N/second|minute|hour|day`` (the manifest's ``rate_limit``
and ``server.per_address_limit``). A key's window opens at its first hit
and lasts one period; the ``N+1``-th hit inside it is refused until the
window ends (``Decision.reset_s``). Both backends keep exactly this rule,
so a deployment can switch between them without changing what clients see.

- ``MemoryLimiter``: one process's counters, at most ``max_keys`` keys
  (least recently used evicted first), so a caller spraying addresses or
  tokens cannot grow memory without bound. Evicting a key forgets its count:
  the spray that evicts it must itself pass the per-address limit first.
- ``RedisLimiter``: one Lua script per check (INCR, and PEXPIRE on the first
  hit, atomically), keys under a prefix, so several server processes share
  one budget. When Redis cannot answer, a check fails closed (503
  SERVICE_UNAVAILABLE, the error model's "backend down") unless
  ``server.rate_limit_fail_open`` says to let calls through unlimited.

Every refusal counts in ``arcana_rate_limited_total{scope}``: ``route``
(a manifest limit on a [[route]]), ``method`` (on a [[grpc]] method),
``address`` (``server.per_address_limit``), ``login`` (failed logins). No
principal or address label: those would make one time series per caller.

Example::

    limiter = MemoryLimiter(max_keys=10_000)
    decision = await limiter.hit("notes:GET /notes:u-1", Rate.parse("100/minute"))
    decision.check("GET /notes", "route")  # raises RateLimited with retry_after when refused
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from prometheus_client import Counter

from arcana.errors import CircuitOpen, RateLimited, ServiceUnavailable
from arcana.manifest import RATE_RE
from arcana.resilience.breaker import CircuitBreaker
from arcana.resilience.guard import counts

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger("arcana.ratelimit")

PERIODS = {"second": 1, "minute": 60, "hour": 3_600, "day": 86_400}
REDIS_PREFIX = "arcana:ratelimit:"
# A check waits at most this long for Redis; a slow Redis must not become every request's latency.
REDIS_TIMEOUT_S = 0.25
# Connections one process's limiter opens to Redis: a check takes well under a millisecond, so this
# serves tens of thousands of checks a second; a flood waits for one (then 503) rather than opening more.
REDIS_MAX_CONNECTIONS = 64
# What a caller refused because Redis did not answer is told to wait, in seconds.
REDIS_DOWN_RETRY_AFTER_S = 1.0
# Process-wide, like every Prometheus metric object: the scrape collects it.
RATE_LIMITED = Counter("arcana_rate_limited_total", "Requests refused by a rate limit, by its scope", ["scope"])


@dataclass(frozen=True)
class Rate:
    limit: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"100/minute"`` -> Rate(100, 60); ``"0"`` (off) -> None; anything else raises ValueError."""
        if text == "0":
            return None
        if not RATE_RE.match(text):
            raise ValueError(f"'{text}' is not a rate: write N/second|minute|hour|day, e.g. 100/minute, or 0 for off")
        count, unit = text.split("/")
        return cls(int(count), PERIODS[unit])

    def __str__(self) -> str:
        return f"{self.limit}/{self.period_s}s"


class Decision(NamedTuple):
    """One check's outcome: whether the hit is allowed and the numbers for the RateLimit headers.

    A named tuple rather than a frozen dataclass: made on every limited call, and a third as dear.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_s: float

    def check(self, what: str, scope: str) -> None:
        """Raise RateLimited when refused, counted under ``scope`` (route | method | address)."""
        if not self.allowed:
            RATE_LIMITED.labels(scope).inc()
            raise RateLimited(f"rate limit exceeded for {what}", retry_after=self.reset_s, limit=self.limit)

    def headers(self) -> dict[str, str]:
        """The RateLimit-* fields (IETF draft, the same three a 429 carries) for an allowed call."""
        reset = max(1, math.ceil(self.reset_s))  # whole seconds, as Retry-After and the 429's ratelimit-reset
        return {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(reset),
        }


class Limiter(Protocol):
    """Counts hits per key; the backend chosen by ``server.rate_limit_backend``."""

    async def hit(self, key: str, rate: Rate) -> Decision: ...

    async def close(self) -> None: ...


def _digest(key: str, rate: Rate) -> bytes:
    """A fixed-size key (whatever a token's subject or an address looks like); a changed rate starts afresh."""
    text = f"{rate.limit}/{rate.period_s}s|{key}"  # str(rate), without a call on every check
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _decision(count: int, rate: Rate, reset_s: float) -> Decision:
    return Decision(count <= rate.limit, rate.limit, max(0, rate.limit - count), max(0.0, reset_s))


class MemoryLimiter:
    """This process's counters: at most ``max_keys`` keys, the least recently used evicted first."""

    def __init__(self, max_keys: int, clock: Callable[[], float] = time.monotonic) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._clock = clock
        # key -> (window start, hits in it), least recently used first. The key is Python's hash of
        # (rate, key): fixed-size whatever the key holds, and keyed per process (SipHash with a
        # random seed), so nobody can aim collisions at it; a tenth of the blake2b digest's cost,
        # which only Redis, shared by processes, needs.
        self._windows: OrderedDict[int, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, key: str, rate: Rate) -> Decision:
        return self.hit_now(key, rate)

    def hit_now(self, key: str, rate: Rate) -> Decision:
        digest, now = hash((rate.limit, rate.period_s, key)), self._clock()
        with self._lock:
            start, count = self._windows.pop(digest, (now, 0))
            if now >= start + rate.period_s:
                start, count = now, 0
            if len(self._windows) >= self._max_keys:
                self._windows.popitem(last=False)
            self._windows[digest] = (start, count + 1)
        return _decision(count + 1, rate, start + rate.period_s - now)

    async def close(self) -> None:
        return None


# KEYS[1] the counter, ARGV[1] the period in ms: the hit count and the window's ms left, in one atomic step.
_HIT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


class RedisLimiter:
    """Counters in Redis, shared by every process that uses the same URL and prefix."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        prefix: str = REDIS_PREFIX,
        fail_open: bool = False,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._fail_open = fail_open
        self._script = client.register_script(_HIT_SCRIPT)
        self._failing = False
        # Redis's breaker (arcana.resilience): while it is open, hits fail open at once, with no connect wait.
        self._breaker = breaker

    @classmethod
    def from_url(
        cls, url: str, prefix: str = REDIS_PREFIX, fail_open: bool = False, breaker: CircuitBreaker | None = None
    ) -> RedisLimiter:
        import redis.asyncio  # lazily: only a deployment that chose Redis needs the package

        timeout = REDIS_TIMEOUT_S
        # At most REDIS_MAX_CONNECTIONS; a check that finds them all busy waits as long as for a reply.
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
        )
        return cls(redis.asyncio.Redis.from_pool(pool), prefix, fail_open, breaker)

    async def hit(self, key: str, rate: Rate) -> Decision:
        """Count one hit; when Redis fails, refuse it with 503 (or allow it, ``fail_open``) and warn once per outage.

        Why closed by default: a limit that lapses whenever Redis is slow or
        down can be switched off by whoever can overload Redis, and the error
        model answers "a backend is down" with SERVICE_UNAVAILABLE. The wait is
        bounded (``REDIS_TIMEOUT_S``), so the 503 comes fast. ``fail_open``
        trades that for availability: calls go through unlimited meanwhile,
        still bounded by the per-plugin concurrency limits and ``max_in_flight``.
        """
        import redis

        name = self._prefix + _digest(key, rate).hex()
        try:
            permit = None if self._breaker is None else self._breaker.admit()
        except CircuitOpen:
            # Redis's breaker is open (warned when it opened): the same choice as a failed hit, without the wait.
            if self._fail_open:
                return Decision(True, rate.limit, rate.limit, float(rate.period_s))
            raise
        try:
            count, ttl_ms = await self._script(keys=[name], args=[rate.period_s * 1000])
        except (redis.RedisError, OSError) as exc:
            if permit is not None and counts(exc):
                permit.failure()
            elif permit is not None:
                permit.release()
            if not self._failing:
                mode = "failing open: not enforced" if self._fail_open else "failing closed: calls refused with 503"
                logger.warning("rate limits: Redis unavailable (%s): %s", mode, exc)
            self._failing = True
            if self._fail_open:
                return Decision(True, rate.limit, rate.limit, float(rate.period_s))
            raise ServiceUnavailable(
                "rate limits cannot be checked right now; try again shortly",
                retry_after=REDIS_DOWN_RETRY_AFTER_S,  # no detail: the warning above is the outage's one log line
            ) from None
        except BaseException:
            if permit is not None:
                permit.release()  # cancelled: nothing learned about Redis
            raise
        if permit is not None:
            permit.success()
        if self._failing:
            logger.warning("rate limits enforced again, Redis is back")
            self._failing = False
        return _decision(int(count), rate, int(ttl_ms) / 1000)

    async def close(self) -> None:
        await self._client.aclose()


def build_limiter(
    backend: str,
    redis_url: str,
    max_keys: int,
    prefix: str = REDIS_PREFIX,
    fail_open: bool = False,
    breaker: CircuitBreaker | None = None,
) -> Limiter:
    """``breaker``: Redis's circuit breaker, for the Redis backend (no connect wait per hit while it is down)."""
    if backend == "redis":
        return RedisLimiter.from_url(redis_url, prefix, fail_open, breaker)
    return MemoryLimiter(max_keys)
