"""The store's contract suite runs once per backend: SQLite and PostgreSQL (and Redis for the kv).

``database`` is migrated once per backend and run; each test starts from
empty tables. ``kv`` is the key-value half on SQLite, PostgreSQL and Redis
(127.0.0.1:6379, a key prefix of its own per test, deleted afterwards; no
server: the Redis tests skip loudly, and fail with CI=true). ``host`` calls the capability's host functions the way the
engine does (JSON bytes in, JSON bytes out), as a given plugin.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from arcana.config import DatabaseConfig
from arcana.database import Database, migrate
from arcana.manifest import Manifest
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.store import StoreCapability, StoreConfig
from arcana_host.store.backend import KvBackend
from arcana_host.store.schema import documents, kv
from arcana_host.store.sql_backend import SqlStoreBackend
from database_fixtures import REDIS_URL

Host = Callable[..., dict[str, Any]]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
KV_BACKENDS = [*BACKENDS, "redis"]


def database_url(kind: str, request: pytest.FixtureRequest, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _migrated(kind: str, request: pytest.FixtureRequest, folder: Path) -> Iterator[Database]:
    db = Database(DatabaseConfig(url=database_url(kind, request, folder)))
    migrate(db.engine)
    yield db
    db.close()


@pytest.fixture(scope="session")
def sqlite_store_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    yield from _migrated("sqlite", request, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session")
def postgresql_store_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    yield from _migrated("postgresql", request, tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="session", params=BACKENDS)
def database(request: pytest.FixtureRequest) -> Database:
    db: Database = request.getfixturevalue(f"{request.param}_store_db")
    return db


def emptied_backend(database: Database) -> SqlStoreBackend:
    with database.engine.begin() as conn:
        conn.execute(sa.delete(documents))
        conn.execute(sa.delete(kv))
    return SqlStoreBackend(database.engine)


@pytest.fixture
def backend(database: Database) -> SqlStoreBackend:
    return emptied_backend(database)


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix for this test alone; every key under it is deleted afterwards."""
    prefix = f"arcana-test-{uuid.uuid4().hex}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture(params=KV_BACKENDS)
def kv_backend(request: pytest.FixtureRequest) -> Iterator[KvBackend]:
    """The key-value half, empty, on each backend in turn."""
    if request.param != "redis":
        yield emptied_backend(request.getfixturevalue(f"{request.param}_store_db"))
        return
    # Imported here: the suite collects (and runs -k "not redis") without the Redis kv.
    from arcana_host.store.redis_kv import RedisKv

    backend = RedisKv(redis.Redis.from_url(REDIS_URL), request.getfixturevalue("redis_prefix"))
    yield backend
    backend.close()


@pytest.fixture
def store(backend: SqlStoreBackend) -> StoreCapability:
    return StoreCapability(
        StoreConfig(max_doc_bytes=2048, max_value_bytes=512, max_page_size=50, max_batch_ops=10), backend
    )


@pytest.fixture
def host(store: StoreCapability) -> Host:
    """host("store_put", collection=..., doc=..., plugin="other") -> the JSON reply."""

    def call(name: str, plugin: str = "alpha", **request: Any) -> dict[str, Any]:
        functions = link_capability(store, PluginSpec(Manifest(plugin, "1.0.0"), frozenset({"store"})))
        reply = functions[name].call(CallContext(plugin, "1.0.0"), json.dumps(request).encode())
        return json.loads(reply)  # type: ignore[no-any-return]

    return call
