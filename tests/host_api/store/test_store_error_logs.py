"""Database failures are logged for the operator without the statement's values (a note's text is client data)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from arcana.config import DatabaseConfig
from arcana.database import create_db_engine, map_db_errors
from arcana.errors import ServiceUnavailable

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_failed_statement_is_logged_and_raised_without_its_parameters(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/e.db" if kind == "sqlite" else str(request.getfixturevalue("postgres_url"))
    engine = create_db_engine(DatabaseConfig(url=url))
    secret = f"secret{uuid.uuid4().hex[:8]}"
    try:
        with caplog.at_level(logging.WARNING, logger="arcana.database"), pytest.raises(ServiceUnavailable) as caught:
            with map_db_errors("store"), engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO no_such_table (doc) VALUES (:doc)"), {"doc": secret})
    finally:
        engine.dispose()
    assert engine.hide_parameters is True
    logged = [r.getMessage() for r in caplog.records if r.name == "arcana.database"]
    assert logged and all(m.startswith("store: database") for m in logged), logged
    # Neither the log line, nor the error's operator detail, nor the chained driver error (a trace would show it).
    for text in (*logged, caught.value.detail, str(caught.value.__cause__)):
        assert secret not in text
    assert "no_such_table" in caught.value.detail or "42P01" in caught.value.detail  # still says what failed
