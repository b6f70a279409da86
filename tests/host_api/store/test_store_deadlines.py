"""The store works within its plugin call's time: a lock wait that would outlive the caller saves nothing.

The failure these guard against: SQLite's busy timeout (5 s) or PostgreSQL's
unbounded lock wait outlived a plugin's 2 s limit, the client was told
"timeout", and the write was saved when the lock went away; a retrying
client then made a duplicate. Each test holds the write lock from another
connection, as another process would, and lets it go after the caller's
deadline but well before the database would have given up on its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arcana.config import DatabaseConfig
from arcana.database import Database, create_db_engine, migrate, transaction, writer
from arcana.errors import ServiceUnavailable
from arcana.manifest import Manifest
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.store import StoreCapability
from arcana_host.store.schema import documents
from arcana_host.store.sql_backend import SqlStoreBackend

# The caller's time, and how long the lock is held: past the deadline, far
# short of the 5 s SQLite busy timeout (PostgreSQL has no bound of its own).
CALL_S, HOLD_S = 0.3, 1.5


def call_in(seconds: float) -> CallContext:
    return CallContext("alpha", "1.0.0", "r", deadline=time.monotonic() + seconds)


def host(store: StoreCapability, name: str, call: CallContext, **request: Any) -> dict[str, Any]:
    """One host call as the engine makes it, within ``call``."""
    functions = link_capability(store, PluginSpec(Manifest("alpha", "1.0.0"), frozenset({"store"})))
    return json.loads(functions[name].call(call, json.dumps(request).encode()))  # type: ignore[no-any-return]


@contextmanager
def lock_held_for(database: Database, seconds: float) -> Iterator[None]:
    """The store's write lock, taken by another connection and let go after ``seconds`` (whatever happens)."""
    url = database.engine.url
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(str(url.database), isolation_level=None, check_same_thread=False)
        conn.execute("BEGIN IMMEDIATE")
        release = threading.Timer(seconds, conn.execute, ("ROLLBACK",))
    else:
        other = sa.create_engine(url)
        pg = other.connect()
        pg.begin()
        pg.execute(sa.text("LOCK TABLE store_documents, store_kv IN ACCESS EXCLUSIVE MODE"))
        release = threading.Timer(seconds, pg.rollback)
    release.start()
    try:
        yield
    finally:
        release.join()
        if url.get_backend_name() == "sqlite":
            conn.close()
        else:
            pg.close()
            other.dispose()


def stored(backend: SqlStoreBackend, collection: str) -> int:
    with backend._engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(documents.c.collection == collection)).scalar_one())


@pytest.mark.parametrize("name, request_body", [("store_put", {"doc": {"n": 1}}), ("store_batch", None)])
def test_a_write_waiting_past_the_deadline_answers_unavailable_and_saves_nothing(
    store: StoreCapability, backend: SqlStoreBackend, database: Database, name: str, request_body: Any
) -> None:
    body = request_body or {"ops": [{"op": "put", "collection": "late", "doc": {"n": 1}}]}
    call = call_in(CALL_S)
    with lock_held_for(database, HOLD_S):
        reply = host(store, name, call, collection="late", **body)
    assert reply["error"]["code"] == "SERVICE_UNAVAILABLE", reply
    assert stored(backend, "late") == 0  # the lock is gone now: nothing was saved behind the caller's back
    assert call.may_have_saved is False


def test_kv_writes_give_up_at_the_deadline_too(store: StoreCapability, database: Database) -> None:
    call = call_in(CALL_S)
    with lock_held_for(database, HOLD_S):
        reply = host(store, "kv_incr", call, key="hits")
    assert reply["error"]["code"] == "SERVICE_UNAVAILABLE", reply
    assert host(store, "kv_get", call_in(5), key="hits") == {"found": False, "value": None}


def test_a_write_within_the_deadline_is_saved_and_marks_the_call(store: StoreCapability) -> None:
    read = call_in(5)
    assert host(store, "store_query", read, collection="fine")["total"] == 0
    assert read.may_have_saved is False  # reading saves nothing
    write = call_in(5)
    assert host(store, "store_put", write, collection="fine", doc={"n": 1})["doc"]["version"] == 1
    assert write.may_have_saved is True


def test_a_call_with_no_time_left_is_refused_before_the_database(
    store: StoreCapability, backend: SqlStoreBackend
) -> None:
    late = call_in(-0.001)
    for name, body in (("store_put", {"collection": "c", "doc": {}}), ("store_get", {"collection": "c", "id": "x"})):
        reply = host(store, name, late, **body)
        assert reply["error"]["code"] == "SERVICE_UNAVAILABLE" and "no time left" in reply["error"]["message"]
    assert stored(backend, "c") == 0 and late.may_have_saved is False


def test_a_transaction_reaching_its_commit_after_the_deadline_rolls_back(
    backend: SqlStoreBackend, database: Database
) -> None:
    call = call_in(5)
    row = {"plugin": "alpha", "collection": "slow", "id": "x", "version": 1, "created_at": "t", "updated_at": "t"}
    with pytest.raises(ServiceUnavailable, match="nothing was saved"):
        with transaction(writer(database.engine), "store", call, write=True) as conn:
            conn.execute(sa.insert(documents).values(**row, doc={}))
            call.deadline = time.monotonic() - 0.001  # the statement took the caller's remaining time
    assert stored(backend, "slow") == 0
    assert call.may_have_saved is False  # rolled back: nothing of it may have been saved


def test_unbounded_transactions_keep_the_configured_lock_wait(tmp_path: Path) -> None:
    """SQLite's busy timeout belongs to the pooled connection: a call's short one must not stick to it."""
    engine = create_db_engine(DatabaseConfig(url=f"sqlite:///{tmp_path}/one.db", pool_size=1, max_overflow=0))
    migrate(engine)
    try:
        with transaction(engine, "store", call_in(0.5)) as conn:
            bounded = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        with engine.connect() as conn:
            after = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        with transaction(engine, "store", call_in(60)) as conn:
            capped = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    finally:
        engine.dispose()
    assert 0 < bounded <= 500 and after == 5000
    assert capped == 5000  # a long deadline never waits longer than the configured busy timeout


@pytest.mark.postgres
def test_postgres_bounds_lock_waits_and_statements_for_the_transaction_only(postgres_url: str) -> None:
    engine = create_db_engine(DatabaseConfig(url=postgres_url, pool_size=1, max_overflow=0))
    try:
        with transaction(engine, "store", call_in(0.5)) as conn:
            inside = [conn.execute(sa.text(f"SHOW {name}")).scalar() for name in ("lock_timeout", "statement_timeout")]
        with engine.connect() as conn:
            after = [conn.execute(sa.text(f"SHOW {name}")).scalar() for name in ("lock_timeout", "statement_timeout")]
    finally:
        engine.dispose()
    for value in inside:
        assert value is not None and value.endswith("ms") and 0 < int(value.removesuffix("ms")) <= 500
    assert after == ["0", "0"]
