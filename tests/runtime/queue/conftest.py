"""The queue's contract suite runs once per backend: SQLite, PostgreSQL and Redis.

The SQL databases are migrated once per run and emptied before each test.
Redis gets a key prefix of its own per test, deleted afterwards. An
unreachable Redis is treated like an unreachable PostgreSQL
(``database_fixtures``): the Redis tests skip, loudly, outside CI and fail
with CI=true.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa

from arcana.config import DatabaseConfig
from arcana.database import Database, migrate
from arcana.queue.sql_backend import SqlQueueBackend
from arcana.queue.sql_schema import jobs, schedules
from arcana.queue.types import QueueBackend
from database_fixtures import REDIS_URL

SQL_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
BACKENDS = [*SQL_BACKENDS, "redis"]


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(DatabaseConfig(url=f"sqlite:///{tmp_path_factory.mktemp('queue') / 'queue.db'}"))
    assert db.prepare() is None  # migrates the file
    yield db
    db.close()


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[Database]:
    db = Database(DatabaseConfig(url=postgres_url))
    migrate(db.engine)
    yield db
    db.close()


def _emptied(request: pytest.FixtureRequest, kind: str) -> Database:
    db: Database = request.getfixturevalue(f"{kind}_database")
    with db.engine.begin() as conn:
        conn.execute(sa.delete(jobs))
        conn.execute(sa.delete(schedules))
    return db


@pytest.fixture
def sql_database(request: pytest.FixtureRequest) -> Database:
    """Parametrize indirectly with SQL_BACKENDS: that database, its queue tables empty."""
    return _emptied(request, request.param)


def _redis_backend(request: pytest.FixtureRequest) -> Iterator[QueueBackend]:
    client: redis.Redis = request.getfixturevalue("redis_client")
    # Imported here: the suite collects (and runs -k "not redis") without the Redis backend.
    from arcana.queue.redis_backend import RedisQueueBackend

    prefix = f"arcana-test-{uuid.uuid4().hex}"
    backend = RedisQueueBackend(redis.Redis.from_url(REDIS_URL), prefix=prefix)
    try:
        yield backend
    finally:
        backend.close()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[QueueBackend]:
    """An empty queue on each backend in turn."""
    if request.param == "redis":
        yield from _redis_backend(request)
        return
    yield SqlQueueBackend(_emptied(request, request.param).engine)
