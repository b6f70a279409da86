"""PostgreSQL for the tests: one fresh schema per run on 127.0.0.1:5432, dropped afterwards.

The one place that decides what an unreachable server means: outside CI the
PostgreSQL tests skip, saying so loudly in the summary (`-ra`); with CI=true
they fail, so CI can never go green without having run them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
import redis
from psycopg import sql

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
PG_USERS = ("postgres", "root")  # trust auth: whichever role the machine has


def _connect() -> tuple[psycopg.Connection | None, str]:
    errors = []
    for user in PG_USERS:
        try:
            conn = psycopg.connect(
                host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=user, connect_timeout=3, autocommit=True
            )
            return conn, user
        except psycopg.Error as exc:
            errors.append(f"as {user}: {str(exc).strip().splitlines()[0]}")
    return None, "; ".join(errors)


@contextmanager
def _schema(conn: psycopg.Connection, user: str) -> Iterator[str]:
    schema = f"arcana_test_{os.getpid()}_{secrets.token_hex(4)}"
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}?options=-csearch_path%3D{schema}"
    finally:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def _postgres() -> Iterator[tuple[psycopg.Connection, str]]:
    conn, user = _connect()
    if conn is None:
        reason = (
            f"!!! PostgreSQL tests NOT RUN: no server at {PG_HOST}:{PG_PORT}/{PG_DATABASE} ({user}). "
            "Start PostgreSQL with trust auth and a 'test' database to run them."
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this is a failure)", pytrace=False)
        pytest.skip(reason)
    with conn:
        yield conn, user


@pytest.fixture(scope="session")
def postgres_url(_postgres: tuple[psycopg.Connection, str]) -> Iterator[str]:
    """A SQLAlchemy URL whose connections use a schema of their own (search_path), for the whole run."""
    with _schema(*_postgres) as url:
        yield url


@pytest.fixture
def fresh_postgres_url(_postgres: tuple[psycopg.Connection, str]) -> Iterator[str]:
    """Like ``postgres_url``, with an empty schema for this test alone (e.g. to run migrations from scratch)."""
    with _schema(*_postgres) as url:
        yield url


REDIS_URL = "redis://127.0.0.1:6379/0"


def connect_redis(url: str = REDIS_URL) -> redis.Redis:
    """A client of the Redis at ``url``, by the same rule as PostgreSQL: skipped loudly, or failed under CI."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"!!! Redis tests NOT RUN: no server at {url} ({exc}). Start Redis there to run them."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this is a failure)", pytrace=False)
        pytest.skip(reason)
    return client


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """Redis on 127.0.0.1:6379 (the queue's, the kv's and the rate limits' Redis tests)."""
    client = connect_redis()
    yield client
    client.close()
