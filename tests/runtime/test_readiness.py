"""Readiness: the database ping, its cache and timeout, and Retry-After on every kernel 503."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from arcana.config import ArcanaConfig, DatabaseConfig
from arcana.database import SCHEMA_RETRY_AFTER_S, UNAVAILABLE_RETRY_AFTER_S, Database, map_db_errors
from arcana.errors import ServiceUnavailable
from arcana.kernel import DatabaseProbe, Kernel, Readiness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Pings:
    """A ping that answers from a list and counts its calls; ``hold`` blocks it until released."""

    def __init__(self, *answers: str | None) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self) -> str | None:
        self.calls += 1
        self.hold.wait(10)
        return self.answers.pop(0)


def test_the_answer_is_cached_for_the_cache_time_then_asked_again() -> None:
    pings, clock = Pings(None, "down"), Clock()
    probe = DatabaseProbe(pings, timeout_s=5, cache_s=1.0, clock=clock)

    async def scenario() -> list[str | None]:
        answers = [await probe.problem() for _ in range(5)]
        clock.now += 0.999
        answers.append(await probe.problem())
        clock.now += 0.002
        answers.append(await probe.problem())
        return answers

    assert asyncio.run(scenario()) == [None] * 6 + ["down"]
    assert pings.calls == 2


def test_a_ping_that_hangs_is_a_problem_after_the_timeout_and_is_never_joined_by_another() -> None:
    pings, clock = Pings("late", None), Clock()
    pings.hold.clear()
    probe = DatabaseProbe(pings, timeout_s=0.05, cache_s=1.0, clock=clock)

    async def scenario() -> list[str | None]:
        first = await probe.problem()
        clock.now += 5  # the cache expired, but the first ping still hangs: it is waited on again
        second = await probe.problem()
        calls_while_hung = pings.calls
        pings.hold.set()
        while probe._running is not None and not probe._running.done():
            await asyncio.sleep(0.01)
        clock.now += 5
        third = await probe.problem()  # the hung one has finished: a new ping
        return [first, second, calls_while_hung, third]

    first, second, calls_while_hung, third = asyncio.run(scenario())
    assert first == second == "the database did not answer within 0.05 s"
    assert calls_while_hung == 1 and third is None and pings.calls == 2


def test_a_kernel_that_is_not_started_is_not_ready() -> None:
    kernel = Kernel(ArcanaConfig())
    try:
        assert asyncio.run(kernel.readiness()) == Readiness(False, 0, "the kernel is loading its plugins", 1)
    finally:
        kernel.close()


def test_sqlite_ping_opens_the_file_fresh_and_never_creates_it(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    database = Database(DatabaseConfig(url=f"sqlite:///{path}"))
    try:
        assert database.prepare() is None and database.ping() is None
        path.rename(tmp_path / "away.db")
        path.mkdir()  # what a lost mount or a botched restore looks like
        assert (database.ping() or "").startswith("the database does not answer: unable to open database file")
        path.rmdir()
        assert database.ping() is not None and not path.exists()  # mode=rw: the ping made no empty database
        (tmp_path / "away.db").rename(path)
        assert database.ping() is None
    finally:
        database.close()


def test_server_ping_reports_connection_refused() -> None:
    database = Database(DatabaseConfig(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    try:
        assert "Connection refused" in (database.ping() or "")
    finally:
        database.close()


@pytest.mark.parametrize(
    "error, retry_after",
    [
        (sa.exc.OperationalError("SELECT 1", {}, Exception("gone")), UNAVAILABLE_RETRY_AFTER_S),
        (sa.exc.TimeoutError("pool exhausted"), UNAVAILABLE_RETRY_AFTER_S),
        (sa.exc.ProgrammingError("SELECT 1", {}, Exception("no table")), SCHEMA_RETRY_AFTER_S),
    ],
)
def test_every_database_503_carries_retry_after(error: Exception, retry_after: int) -> None:
    with pytest.raises(ServiceUnavailable) as caught, map_db_errors("store"):
        raise error
    assert caught.value.retry_after == retry_after >= 1
