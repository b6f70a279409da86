"""In-process kernels over the fake engine (tests/fakes.py): started, closed after the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.executor import ThreadShare, ThreadShares
from fakes import TEST_SECRET, FakeEngine, Kernels


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file with the schema applied; each kernel starts on a copy (migrating costs ~100 ms)."""
    path = tmp_path_factory.mktemp("template") / "arcana.db"
    database = Database(DatabaseConfig(url=f"sqlite:///{path}"))
    try:
        assert database.prepare() is None
    finally:
        database.close()
    return path


@pytest.fixture
def threads() -> Iterator[ThreadShare]:
    """One plugin's threads (plugin "p"), for pools built by hand."""
    share = ThreadShares(4).get("p")
    yield share
    share.close()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def kernels(
    tmp_path: Path, engine: FakeEngine, migrated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Kernels]:
    monkeypatch.setenv("ARCANA_JWT_SECRET", TEST_SECRET)
    made = Kernels(tmp_path, engine, migrated_db)
    yield made
    made.close()
