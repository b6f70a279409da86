"""The kernel's database: one SQLAlchemy engine, its schema, and its failures.

SQLite (the embedded default) is opened in WAL mode with a busy timeout, and
pysqlite's own transaction handling is switched off so that we emit ``BEGIN``
ourselves: a connection opened from ``writer(engine)`` begins with ``BEGIN
IMMEDIATE``, so competing writers (threads or processes) queue on the busy
timeout instead of failing half-way through a read-then-write. PostgreSQL
needs none of this.

The schema belongs to Alembic (``arcana/migrations``). ``arcana migrate``
upgrades any database; ``Database.prepare`` upgrades a SQLite file on first
use unless ``database.auto_migrate`` is false, and only checks PostgreSQL.
Foreign errors are translated at this boundary by ``map_db_errors``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from arcana.config import DatabaseConfig
from arcana.errors import ServiceUnavailable, ValidationFailed

logger = logging.getLogger("arcana.database")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Held (per transaction) while migrating PostgreSQL, so that two processes
# starting together upgrade one after the other.
_PG_MIGRATION_LOCK = 0x617263616E61  # "arcana"
# Retry-After (seconds) on the 503s below: an outage is usually short; a
# schema that is not ready waits for an operator to run `arcana migrate`.
UNAVAILABLE_RETRY_AFTER_S = 2
SCHEMA_RETRY_AFTER_S = 30
# libpq's smallest connect timeout (it treats anything lower as 2 seconds).
PING_CONNECT_TIMEOUT_S = 2


def resolve_url(url: str) -> URL:
    """The URL with psycopg as PostgreSQL's driver.

    A SQLite path is used as given: ``load_config`` already made a relative
    one absolute (against the config file's folder or the base directory).
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_db_engine(config: DatabaseConfig) -> Engine:
    url = resolve_url(config.url)
    pool: dict[str, Any] = {
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": config.pool_timeout_s,
    }
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, echo=config.echo, pool_pre_ping=True, connect_args={"connect_timeout": 5}, **pool)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        echo=config.echo,
        connect_args={"timeout": config.busy_timeout_ms / 1000, "check_same_thread": False},
        **pool,
    )
    _sqlite_setup(engine, config.busy_timeout_ms)
    return engine


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout_ms)}", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("sqlite_begin") == "IMMEDIATE"
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine, for transactions that write: SQLite takes its write lock at BEGIN."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def map_db_errors(what: str) -> Iterator[None]:
    """Translate SQLAlchemy failures into the public error model (``raise ... from``)."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        logger.warning("%s: database unavailable: %s", what, exc)
        raise ServiceUnavailable(
            f"{what}: the database is unavailable; try again later",
            retry_after=UNAVAILABLE_RETRY_AFTER_S,
            detail=str(exc),
        ) from exc
    except sa_exc.ProgrammingError as exc:
        logger.error("%s: database schema not ready: %s", what, exc)
        raise ServiceUnavailable(
            f"{what}: the database schema is not ready (run `arcana migrate`)",
            retry_after=SCHEMA_RETRY_AFTER_S,
            detail=str(exc),
        ) from exc
    except sa_exc.DataError as exc:
        raise ValidationFailed(f"{what}: a value is out of range for the database") from exc


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the schema to the newest revision: (revision before, revision now).

    Safe when processes race to do it: the second waits for the first's lock,
    then finds nothing to do.
    """
    from alembic import command
    from alembic.migration import MigrationContext

    with writer(engine).begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(_alembic_config(connection), "head")
    return before, head_revision()


class Database:
    """The process's handle on the database: an engine, and a schema made ready once."""

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.engine = create_db_engine(config)
        self._ready = False
        self._lock = threading.Lock()
        # Made on the first ping of a server database: connections outside the pool.
        self._ping_engine: Engine | None = None

    def prepare(self) -> str | None:
        """Make the schema ready (SQLite) or check it (PostgreSQL); why it is not ready, else None."""
        with self._lock:
            if self._ready:
                return None
            try:
                if is_sqlite(self.engine) and self.config.auto_migrate:
                    migrate(self.engine)
                else:
                    current, head = current_revision(self.engine), head_revision()
                    if current != head:
                        return f"the database schema is at revision {current}, this kernel needs {head}"
            except sa_exc.OperationalError as exc:
                logger.warning("database unreachable while preparing the schema: %s", exc)
                return None if not is_sqlite(self.engine) else f"cannot open the database: {exc.orig}"
            self._ready = True
            return None

    def ping(self) -> str | None:
        """None when the database answers a trivial query on a fresh connection, else why not.

        Blocking; the kernel runs it off the event loop, with a timeout and a
        cache (``Kernel.readiness``). A fresh connection, never the pool's: a
        busy pool is not a database that is down, and a pooled SQLite
        connection keeps reading a file that was since removed or replaced.
        """
        try:
            if is_sqlite(self.engine):
                _ping_sqlite(self.engine.url.database)
            else:
                self._ping_server()
        except (sqlite3.Error, sa_exc.SQLAlchemyError) as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return f"the database does not answer: {first_line}"
        return None

    def _ping_server(self) -> None:
        with self._lock:
            if self._ping_engine is None:
                self._ping_engine = sa.create_engine(
                    self.engine.url, poolclass=NullPool, connect_args={"connect_timeout": PING_CONNECT_TIMEOUT_S}
                )
            engine = self._ping_engine
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
        if self._ping_engine is not None:
            self._ping_engine.dispose()


def _ping_sqlite(database: str | None) -> None:
    """Open the file read-write without creating it (mode=rw) and read its first page."""
    if not database or database == ":memory:":
        return
    connection = sqlite3.connect(f"{Path(database).absolute().as_uri()}?mode=rw", uri=True, timeout=1.0)
    try:
        connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    finally:
        connection.close()
