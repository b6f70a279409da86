"""The store's contract suite runs once per backend: SQLite and PostgreSQL.

``database`` is migrated once per backend and run; each test starts from
empty tables. ``host`` calls the capability's host functions the way the
engine does (JSON bytes in, JSON bytes out), as a given plugin.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from arcana.config import DatabaseConfig
from arcana.database import Database, migrate
from arcana.manifest import Manifest
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.store import StoreCapability, StoreConfig
from arcana_host.store.schema import documents, kv
from arcana_host.store.sql_backend import SqlStoreBackend

Host = Callable[..., dict[str, Any]]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def database_url(kind: str, request: pytest.FixtureRequest, folder: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(DatabaseConfig(url=database_url(request.param, request, tmp_path_factory.mktemp("store"))))
    migrate(db.engine)
    yield db
    db.close()


@pytest.fixture
def backend(database: Database) -> SqlStoreBackend:
    with database.engine.begin() as conn:
        conn.execute(sa.delete(documents))
        conn.execute(sa.delete(kv))
    return SqlStoreBackend(database.engine)


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
