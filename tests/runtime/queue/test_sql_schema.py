"""The queue's declared tables (``arcana.queue.sql_schema``) are exactly what migration 0005_queue builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from arcana.config import DatabaseConfig
from arcana.database import create_db_engine, migrate
from arcana.queue.sql_schema import metadata


def _queue_objects(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Only the queue's tables: the store and identity are compared by their own tests."""
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table in metadata.tables


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_migrations_build_exactly_the_declared_queue_tables(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path}/m.db" if kind == "sqlite" else request.getfixturevalue("fresh_postgres_url")
    engine = create_db_engine(DatabaseConfig(url=url))
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"include_object": _queue_objects}), metadata)
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("queue_jobs")}
    engine.dispose()
    assert diff == []
    assert {f"ix_queue_jobs_{name}" for name in ("claim", "fair", "lease", "succeeded", "dead")} <= indexes
