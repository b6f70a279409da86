"""The kernel's database: URLs, SQLite settings, Alembic migrations, failures in the public model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from arcana.config import DatabaseConfig, load_config
from arcana.database import (
    Database,
    create_db_engine,
    current_revision,
    head_revision,
    map_db_errors,
    migrate,
    resolve_url,
)
from arcana.errors import ConfigError, ServiceUnavailable
from arcana_host.store.schema import metadata

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def test_resolve_url_picks_psycopg_and_leaves_sqlite_paths_to_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert resolve_url("sqlite:////abs/x.db").database == "/abs/x.db"
    # load_config made the default's relative path absolute, against the working directory here.
    monkeypatch.chdir(tmp_path)
    url = load_config(None, environ={}).database.url
    assert resolve_url(url).database == str(tmp_path / ".data" / "arcana.db")


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite.db", "postgres://h/db"])
def test_unsupported_urls_stop_start_up(url: str) -> None:
    with pytest.raises(ConfigError, match=r"'database\.url' must be a sqlite:/// or postgresql"):
        DatabaseConfig(url=url)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_db_engine(DatabaseConfig(url=f"sqlite:///{tmp_path}/sub/dir/a.db", busy_timeout_ms=1234))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    engine.dispose()


@pytest.mark.parametrize("kind", BACKENDS)
def test_migrations_build_exactly_the_declared_schema(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/m.db" if kind == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    engine = create_db_engine(DatabaseConfig(url=url))
    assert migrate(engine) == (None, head_revision()) and current_revision(engine) == head_revision()
    assert migrate(engine) == (head_revision(), head_revision())  # idempotent
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": _store_objects})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []


def _store_objects(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Only the store's tables: other kernel units add tables of their own to the same database."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in metadata.tables


def test_concurrent_first_migrations_queue_instead_of_colliding(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path}/race.db"}}))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "arcana.cli", "migrate", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [(*p.communicate(timeout=60), p.returncode) for p in procs]
    assert all(code == 0 for _, _, code in results), results
    outputs = sorted(out for out, _, _ in results)
    assert sum("upgraded from None to revision" in o for o in outputs) == 1
    assert sum("already at revision" in o for o in outputs) == 2


def test_prepare_migrates_sqlite_once_or_explains_why_it_cannot(tmp_path: Path) -> None:
    fresh = Database(DatabaseConfig(url=f"sqlite:///{tmp_path}/a.db"))
    assert fresh.prepare() is None and current_revision(fresh.engine) == head_revision()
    fresh.close()
    manual = Database(DatabaseConfig(url=f"sqlite:///{tmp_path}/b.db", auto_migrate=False))
    assert manual.prepare() == f"the database schema is at revision None, this kernel needs {head_revision()}"
    manual.close()


def test_an_unreachable_database_is_service_unavailable() -> None:
    engine = create_db_engine(DatabaseConfig(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    with pytest.raises(ServiceUnavailable, match="store: the database is unavailable") as caught:
        with map_db_errors("store"), engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
    engine.dispose()
    unreachable = Database(DatabaseConfig(url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    assert unreachable.prepare() is None  # not fatal: calls answer SERVICE_UNAVAILABLE until it is back
    unreachable.close()
