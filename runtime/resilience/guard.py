"""One backend's breaker and retries around each call the kernel makes to it.

``BackendGuard.call(fn, safe=..., deadline=...)`` takes a permit from the
backend's breaker (an open one refuses at once with CircuitOpen, a 503 with
Retry-After, and ``fn`` is not called), runs ``fn``, classifies what
happened and may run it again.

What counts against the breaker (``counts``): connection-level failures
only. The database could not be reached or dropped the connection
(``BackendUnreachable``; an SQLAlchemy ``OperationalError`` or
``InterfaceError`` with no SQLSTATE, a connection-class SQLSTATE ``08xxx``,
a server shutting down ``57P0x``, too many connections ``53300``; SQLite's
cannot-open and I/O errors), Redis could not be reached or did not answer
(``redis.ConnectionError``, ``redis.TimeoutError``). Not counted: answers
(not found, a constraint or version conflict, a refused value), a lock or
statement timeout (the caller's deadline, not the backend's health), SQLite's
busy lock, a local pool with no free connection, a call with no time left.

The retry rule: a failure is retried only when it counts (above) and the
call is safe to repeat:

- reads (store get and query, kv get, queue get, stats, dead list) and
  idempotent writes (kv set, lease extension, a schedule tick, which the
  backend dedupes by key; the sweep) are repeated after any such failure;
- every other write (an insert, an increment, a delete that reports whether
  it deleted, a claim, a job's outcome) is repeated only when the error
  proves nothing was sent: ``BackendUnreachable``, raised by
  ``arcana.database.transaction`` when the database cannot be connected to,
  before any statement. A timeout or a connection lost after sending leaves
  the outcome unknown, and a second INSERT or INCR could apply it twice:
  those are raised, never retried. No Redis error is taken as such proof:
  the Redis client reconnects once by itself (``arcana.redis_client``), so a
  refused connection may follow a first try whose outcome is unknown.

A retry never starts past the call's ``deadline`` (a plugin call's
``CallContext.deadline``) nor past the policy's ``max_total_s``; each
attempt takes its own permit, so a breaker that opens during the retries
stops them. Plugin calls are never retried (the executor never calls this).
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from arcana.errors import ArcanaError, BackendUnreachable, ServiceUnavailable
from arcana.resilience.breaker import CircuitBreaker
from arcana.resilience.retry import RetryPolicy, retry_call

T = TypeVar("T")
# SQLSTATEs of a connection that failed or went away (class 08), a server going down (57P01-57P03)
# and one refusing new connections (53300).
CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
# SQLite's failures of the file itself, not of a statement or a lock.
SQLITE_UNREACHABLE = ("SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_NOTADB", "SQLITE_FULL")
# How deep a chain of causes is walked (raise ... from ... chains are short; a loop is possible).
MAX_CHAIN = 8


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < MAX_CHAIN and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


@functools.cache
def _redis_errors() -> tuple[type[BaseException], ...]:
    try:
        import redis  # an optional extra: only a deployment on Redis has it
    except ImportError:
        return ()
    return (redis.ConnectionError, redis.TimeoutError)


def _sql_unreachable(exc: sa_exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if sqlite_name is not None:
        return str(sqlite_name).startswith(SQLITE_UNREACHABLE)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:
        return True  # psycopg: no SQLSTATE means no statement ran (cannot connect, connection lost)
    return str(sqlstate).startswith(CONNECTION_SQLSTATES)


def counts(exc: BaseException) -> bool:
    """Whether ``exc`` says the backend is unreachable (a breaker failure), rather than that it answered."""
    redis_errors = _redis_errors()
    for e in _chain(exc):
        if isinstance(e, BackendUnreachable | ConnectionRefusedError):
            return True
        if isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError):
            return _sql_unreachable(e)
        if redis_errors and isinstance(e, redis_errors):
            # The client's own pool with no free connection is load here, not a dead server.
            return "No connection available" not in str(e)
    return False


def unsent(exc: BaseException) -> bool:
    """Whether ``exc`` proves the call never reached the backend (so even a write is safe to repeat)."""
    return any(isinstance(e, BackendUnreachable) for e in _chain(exc))


class BackendGuard:
    """A backend's breaker and the kernel's retry policy; ``target`` names it in logs and metrics."""

    def __init__(
        self,
        breaker: CircuitBreaker,
        retry: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.breaker = breaker
        self.retry = retry
        self.target = breaker.name
        self._clock = clock
        self._sleep = sleep
        self._rng = rng

    def call(self, fn: Callable[[], T], *, safe: bool, deadline: float | None = None) -> T:
        """``fn()`` under the breaker, retried per the module's rule; ``safe``: repeatable whatever happened."""
        retryable = counts if safe else _counts_and_unsent
        return retry_call(
            functools.partial(self._attempt, fn),
            self.retry,
            retryable,
            target=self.target,
            deadline=deadline or None,
            clock=self._clock,
            sleep=self._sleep,
            rng=self._rng,
        )

    def _attempt(self, fn: Callable[[], T]) -> T:
        permit = self.breaker.admit()
        try:
            result = fn()
        except BaseException as exc:
            if counts(exc):
                permit.failure()
            elif isinstance(exc, ArcanaError) and not isinstance(exc, ServiceUnavailable):
                permit.success()  # the backend answered: not found, a conflict, a refused value
            else:
                permit.release()  # no time left, a busy pool, a bug: nothing about the backend's health
            raise
        permit.success()
        return result


def refuse_connects_while_open(engine: Engine, breaker: CircuitBreaker) -> None:
    """Every new connection ``engine`` makes is refused at once (CircuitOpen) while ``breaker`` is open.

    For the kernel's own queries that are not behind a ``BackendGuard`` (auth:
    logins, token checks, user administration): while the database is known
    to be down they answer 503 at once instead of each waiting for a connect
    that fails. They take no permit, so they neither count nor use a
    half-open probe; the store's and the queue's guarded calls decide the
    breaker's state. Pooled connections are unaffected (pre-ping drops dead
    ones, and replacing them needs a connect).
    """

    @event.listens_for(engine, "do_connect")
    def _refuse(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
        breaker.refuse_if_open()  # returning None lets SQLAlchemy connect as usual


def _counts_and_unsent(exc: BaseException) -> bool:
    return counts(exc) and unsent(exc)
