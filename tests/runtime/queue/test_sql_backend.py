"""What only the SQL backend has to get right: its query plans, its transactions, its failures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.errors import ServiceUnavailable
from arcana.queue import sql_backend
from arcana.queue.sql_backend import SqlQueueBackend
from arcana.queue.types import JobSpec

from .conftest import SQL_BACKENDS

T0, LEASE = 1_800_000_000.0, 30.0


@pytest.fixture
def queue(sql_database: Database) -> SqlQueueBackend:
    return SqlQueueBackend(sql_database.engine)


def _claim_plans(database: Database, fair: bool) -> list[str]:
    """SQLite's query plan of each statement a claim runs."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.startswith("UPDATE"):
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        SqlQueueBackend(database.engine).claim("w", 8, T0, LEASE, fair=fair)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    with database.engine.connect() as conn:
        return [
            " | ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
            for sql, params in statements
        ]


@pytest.mark.parametrize("sql_database", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("fair", "index"), [(False, "ix_queue_jobs_claim"), (True, "ix_queue_jobs_fair")])
def test_sqlite_claims_read_a_partial_index_in_order_without_sorting(
    sql_database: Database, fair: bool, index: str
) -> None:
    SqlQueueBackend(sql_database.engine).enqueue_many([JobSpec("t")] * 50, T0)
    reap, claim = _claim_plans(sql_database, fair)
    assert "ix_queue_jobs_lease" in reap
    assert index in claim and "TEMP B-TREE" not in claim, claim


@pytest.mark.parametrize("sql_database", SQL_BACKENDS, indirect=True)
def test_enqueue_many_stores_all_jobs_or_none(queue: SqlQueueBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_backend, "_CHUNK", 2)  # the collision lands in a later INSERT of the same transaction
    ids = iter(["a" * 32, "b" * 32, "c" * 32, "a" * 32])
    monkeypatch.setattr(sql_backend, "new_job_id", lambda: next(ids))
    with pytest.raises(ServiceUnavailable, match="collided"):
        queue.enqueue_many([JobSpec("t")] * 4, T0)
    assert queue.get("a" * 32) is None and sum(queue.stats(T0).ready.values()) == 0


@pytest.mark.parametrize("sql_database", SQL_BACKENDS, indirect=True)
def test_batches_larger_than_one_statement_behave_as_one(
    queue: SqlQueueBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sql_backend, "_CHUNK", 2)
    monkeypatch.setattr(sql_backend, "_SWEEP_CHUNK", 2)
    results = queue.enqueue_many([JobSpec("t", dedupe_key=f"k{n % 3}") for n in range(7)], T0)
    assert [r.created for r in results] == [True] * 3 + [False] * 4
    assert [r.id for r in results[3:]] == [results[n % 3].id for n in range(3, 7)]
    for lease in queue.claim("w", 10, T0, LEASE):
        assert queue.fail(lease, "x", None, T0)
    assert queue.replay([r.id for r in results], T0) == 3
    for lease in queue.claim("w", 10, T0, LEASE):
        assert queue.complete(lease, None, T0)
    queue.enqueue_many([JobSpec("t")] * 4, T0)
    for lease in queue.claim("w", 10, T0, LEASE):
        assert queue.complete(lease, None, T0)
    assert queue.sweep(T0 + 10, retention_s=1) == 7


@pytest.fixture
def unmigrated(tmp_path: Path) -> Iterator[SqlQueueBackend]:
    db = Database(DatabaseConfig(url=f"sqlite:///{tmp_path}/empty.db"))
    yield SqlQueueBackend(db.engine)
    db.close()


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.enqueue(JobSpec("t"), T0),
        lambda q: q.claim("w", 1, T0, LEASE),
        lambda q: q.stats(T0),
        lambda q: q.tick("k", T0, JobSpec("t"), T0),
    ],
    ids=["enqueue", "claim", "stats", "tick"],
)
def test_a_database_without_the_queue_tables_is_service_unavailable(unmigrated: SqlQueueBackend, call: Any) -> None:
    with pytest.raises(ServiceUnavailable, match=r"^queue: the database"):
        call(unmigrated)
