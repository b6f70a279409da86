"""The backend guard with fakes: which failures count, which are retried, the deadline, an open breaker."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from sqlalchemy import exc as sa_exc

from arcana.errors import BackendUnreachable, CircuitOpen, Conflict, NotFound, ServiceUnavailable
from arcana.resilience import BreakerPolicy, BreakerState, CircuitBreaker, RetryPolicy
from arcana.resilience.guard import BackendGuard, counts, unsent


class Clock:
    def __init__(self) -> None:
        self.now = 50.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class PgError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__("boom")
        self.sqlstate = sqlstate


class SqliteError(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sqlite_errorname = name


def operational(orig: Exception) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, orig)


def wrapped(cause: BaseException) -> ServiceUnavailable:
    """As the backends raise them: ServiceUnavailable from the driver's error."""
    try:
        raise ServiceUnavailable("store: the database is unavailable") from cause
    except ServiceUnavailable as exc:
        return exc


def refused_redis() -> redis.ConnectionError:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")  # noqa: B904
    except redis.ConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    "error",
    [
        wrapped(operational(PgError(None))),  # cannot connect, connection lost: no SQLSTATE
        wrapped(operational(PgError("08006"))),  # connection failure
        wrapped(operational(PgError("57P01"))),  # the server shuts down
        wrapped(operational(SqliteError("SQLITE_CANTOPEN"))),
        BackendUnreachable("the database is unavailable"),
        wrapped(redis.ConnectionError("Connection closed by server.")),
        wrapped(redis.TimeoutError("Timeout reading from socket")),
    ],
)
def test_connection_level_failures_count_against_the_breaker(error: BaseException) -> None:
    assert counts(error)


@pytest.mark.parametrize(
    "error",
    [
        NotFound("no document"),
        Conflict("stale version"),
        wrapped(operational(PgError("55P03"))),  # lock_timeout: the caller's deadline, not the server's health
        wrapped(operational(PgError("57014"))),  # statement_timeout
        wrapped(operational(SqliteError("SQLITE_BUSY"))),  # another writer holds the lock
        wrapped(sa_exc.IntegrityError("INSERT", {}, PgError("23505"))),
        wrapped(sa_exc.TimeoutError("QueuePool limit reached")),  # our own pool is busy
        wrapped(redis.ConnectionError("No connection available.")),
        wrapped(redis.ResponseError("WRONGTYPE")),
        ServiceUnavailable("the call has no time left for the database"),
    ],
)
def test_answers_timeouts_and_local_limits_do_not_count(error: BaseException) -> None:
    assert not counts(error)


def test_only_a_refused_database_connection_proves_nothing_was_sent() -> None:
    assert unsent(wrapped(BackendUnreachable("refused")))
    # The Redis client reconnects once by itself: its refusal may follow a first try that was sent.
    assert not unsent(wrapped(refused_redis()))
    assert not unsent(wrapped(redis.TimeoutError("Timeout reading from socket")))
    assert not unsent(wrapped(operational(PgError(None))))


def _guard(clock: Clock, threshold: int = 5, attempts: int = 3) -> BackendGuard:
    breaker = CircuitBreaker("database", BreakerPolicy(threshold, 5.0, 1), clock=clock)
    retry = RetryPolicy(max_attempts=attempts, base_delay_s=0.1, max_delay_s=1.0, max_total_s=10.0, jitter=0.0)
    return BackendGuard(breaker, retry, clock=clock, sleep=clock.sleep, rng=lambda: 0.0)


def failing(errors: list[BaseException], result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A call that raises ``errors`` in turn, then returns ``result``; and its call count."""
    calls = [0]

    def fn() -> str:
        calls[0] += 1
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_a_read_is_retried_after_a_connection_failure_with_backoff() -> None:
    clock = Clock()
    fn, calls = failing([wrapped(redis.TimeoutError("t")), wrapped(redis.ConnectionError("lost"))])
    assert _guard(clock).call(fn, safe=True) == "ok"
    assert calls[0] == 3
    assert clock.slept == [0.1, 0.2]


def test_a_write_whose_outcome_is_unknown_is_never_retried() -> None:
    clock = Clock()
    fn, calls = failing([wrapped(redis.TimeoutError("Timeout reading from socket"))])
    with pytest.raises(ServiceUnavailable):
        _guard(clock).call(fn, safe=False)
    assert calls[0] == 1 and clock.slept == []


def test_a_write_refused_before_anything_was_sent_is_retried() -> None:
    clock = Clock()
    fn, calls = failing([BackendUnreachable("refused"), BackendUnreachable("refused")])
    assert _guard(clock).call(fn, safe=False) == "ok"
    assert calls[0] == 3


def test_an_answer_is_raised_at_once_and_is_no_failure() -> None:
    clock = Clock()
    guard = _guard(clock, threshold=1)
    fn, calls = failing([NotFound("no document")])
    with pytest.raises(NotFound):
        guard.call(fn, safe=True)
    assert calls[0] == 1
    assert guard.breaker.state is BreakerState.CLOSED


def test_no_retry_starts_past_the_calls_deadline() -> None:
    clock = Clock()
    fn, calls = failing([wrapped(redis.TimeoutError("t")), wrapped(redis.TimeoutError("t"))])
    with pytest.raises(ServiceUnavailable):
        _guard(clock).call(fn, safe=True, deadline=clock.now + 0.15)  # room for the 0.1 s wait, not the 0.2 s one
    assert calls[0] == 2 and clock.slept == [0.1]


def test_failures_open_the_breaker_and_an_open_breaker_refuses_without_calling_the_backend() -> None:
    clock = Clock()
    guard = _guard(clock, threshold=2, attempts=1)
    for _ in range(2):
        fn, _calls = failing([wrapped(redis.ConnectionError("lost"))])
        with pytest.raises(ServiceUnavailable):
            guard.call(fn, safe=True)
    assert guard.breaker.state is BreakerState.OPEN
    fn, calls = failing([])
    with pytest.raises(CircuitOpen) as refused:
        guard.call(fn, safe=True)
    assert calls[0] == 0
    assert refused.value.retry_after == 5


def test_a_breaker_that_opens_during_the_retries_stops_them() -> None:
    clock = Clock()
    guard = _guard(clock, threshold=2, attempts=5)
    fn, calls = failing([wrapped(redis.ConnectionError("lost")) for _ in range(5)])
    with pytest.raises(CircuitOpen):
        guard.call(fn, safe=True)
    assert calls[0] == 2


def test_after_the_cool_down_a_good_probe_closes_the_breaker() -> None:
    clock = Clock()
    guard = _guard(clock, threshold=1, attempts=1)
    fn, _calls = failing([BackendUnreachable("refused")])
    with pytest.raises(ServiceUnavailable):
        guard.call(fn, safe=True)
    clock.now += 5
    assert guard.call(failing([])[0], safe=True) == "ok"
    assert guard.breaker.state is BreakerState.CLOSED


def test_refusing_while_open_takes_no_permit_so_it_never_uses_a_half_open_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("database", BreakerPolicy(1, 5.0, 1), clock=clock)
    breaker.refuse_if_open()  # closed: nothing happens
    breaker.admit().failure()
    with pytest.raises(CircuitOpen) as refused:
        breaker.refuse_if_open()
    assert refused.value.retry_after == 5
    clock.now += 5
    breaker.refuse_if_open()  # half-open: let through, and the probe is still there for a guarded call
    breaker.refuse_if_open()
    breaker.admit().success()
    assert breaker.state is BreakerState.CLOSED
