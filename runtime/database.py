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
Foreign errors are translated at this boundary by ``map_db_errors``, which
logs what failed but never a statement's parameters (they are client data:
engines are made with ``hide_parameters``, and the log names the driver's
error, not its message, where that message can quote values).

A plugin call's database work is bounded by the call's deadline
(``transaction``): SQLite's wait for the write lock, PostgreSQL's lock
waits and statements never outlive what the caller has left, and a write
transaction refuses to commit once the deadline has passed. A timeout the
client is told about therefore means the work was not saved, unless the
call was marked ``may_have_saved`` before its guard gave up.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import NullPool

from arcana.config import DatabaseConfig
from arcana.errors import BackendUnreachable, ServiceUnavailable, ValidationFailed

logger = logging.getLogger("arcana.database")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Held (per transaction) while migrating PostgreSQL, so that two processes
# starting together upgrade one after the other.
_PG_MIGRATION_LOCK = 0x617263616E61  # "arcana"
# A transaction's bounds on PostgreSQL, in one round trip; both end with the transaction.
_PG_LIMITS = sa.text("SELECT set_config('lock_timeout', :ms, true), set_config('statement_timeout', :ms, true)")
# Execution option: this transaction's SQLite busy timeout (see ``_sqlite_setup``).
_BUSY_OPTION = "arcana_busy_ms"
# What a client refused for lack of time is told to wait, in seconds.
RETRY_AFTER_S = 1.0


class CallBudget(Protocol):
    """What a transaction needs of the plugin call it serves (``arcana.types.CallContext`` is one)."""

    # The call's end on time.monotonic(); 0: none.
    deadline: float
    # Set just before a commit: a fault answered afterwards says the change may have been saved.
    may_have_saved: bool


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
    # Statement parameters are client data (a note's text): never in an error's message, hence never in a log.
    pool["hide_parameters"] = True
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
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout_ms)}", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        record.info[_BUSY_OPTION] = busy_timeout_ms

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # The busy timeout is the connection's, and connections are pooled: each
        # transaction sets the one it needs (its call's time left, at most the
        # configured one), so a short one never outlives its transaction.
        options = connection.get_execution_options()
        busy = min(options.get(_BUSY_OPTION, busy_timeout_ms), busy_timeout_ms)
        if connection.info.get(_BUSY_OPTION) != busy:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(busy)}")
            connection.info[_BUSY_OPTION] = busy
        connection.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_begin") == "IMMEDIATE" else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine, for transactions that write: SQLite takes its write lock at BEGIN."""
    return engine.execution_options(sqlite_begin="IMMEDIATE")


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def map_db_errors(what: str) -> Iterator[None]:
    """Translate SQLAlchemy failures into the public error model (``raise ... from``); log them without data."""
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        raise _unavailable(ServiceUnavailable, what, "unavailable", exc) from exc
    except sa_exc.ProgrammingError as exc:
        cause = describe(exc)
        logger.error("%s: database schema not ready: %s", what, cause)
        raise ServiceUnavailable(
            f"{what}: the database schema is not ready (run `arcana migrate`)",
            retry_after=SCHEMA_RETRY_AFTER_S,
            detail=cause,
        ) from exc
    except sa_exc.DataError as exc:
        raise ValidationFailed(f"{what}: a value is out of range for the database") from exc


def describe(exc: sa_exc.SQLAlchemyError) -> str:
    """A database failure for the operator's log: what kind, never the statement or its parameters.

    SQLite's messages name the problem ("database is locked", "no such
    table: x") and never quote a value; PostgreSQL's can ("invalid input
    syntax for type integer: \"<value>\"", a key's DETAIL), so for those the
    error class and SQLSTATE must do. A failure without a SQLSTATE (cannot
    connect, connection lost) happened outside any statement.
    """
    orig = getattr(exc, "orig", None)
    if orig is None:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    kind = type(orig).__name__
    sqlite_name = getattr(orig, "sqlite_errorname", None)
    if sqlite_name:
        return f"{kind} {sqlite_name}: {orig}"
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate:
        return f"{kind} (SQLSTATE {sqlstate})"
    first = str(orig).strip().splitlines()
    return f"{kind}: {first[0]}" if first else kind


def remaining_ms(call: CallBudget | None, what: str) -> int | None:
    """The call's time left for the database, in whole ms (None: unbounded); SERVICE_UNAVAILABLE when none is left."""
    if call is None or not call.deadline:
        return None
    left = int((call.deadline - time.monotonic()) * 1000)
    if left < 1:
        raise ServiceUnavailable(f"{what}: the call has no time left for the database; try again", retry_after=1)
    return left


@contextmanager
def transaction(
    engine: Engine, what: str, call: CallBudget | None = None, *, write: bool = False
) -> Iterator[Connection]:
    """One transaction on ``engine`` within the time ``call`` has left; failures in the public model.

    SQLite: the busy timeout (the wait for the write lock, taken at BEGIN by a
    ``writer`` engine) is the time left. PostgreSQL: ``lock_timeout`` and
    ``statement_timeout`` are, for this transaction only. A ``write``
    transaction marks the call before it commits and refuses to commit past
    the deadline, so a call the executor has given up on saves nothing new.
    """
    remaining_ms(call, what)  # no time left: no connection either
    with map_db_errors(what), _connect(engine, what) as conn:
        # Measured again with the connection in hand: checking one out (a new
        # connection, PostgreSQL's pre-ping) takes time of its own.
        limit = remaining_ms(call, what)
        sqlite = conn.dialect.name == "sqlite"
        if limit is not None and sqlite:
            conn.execution_options(**{_BUSY_OPTION: limit})
        with conn.begin():
            if limit is not None and not sqlite:
                conn.execute(_PG_LIMITS, {"ms": str(limit)})
            yield conn
            if write and call is not None:
                _commit_point(call, what)


def _connect(engine: Engine, what: str) -> Connection:
    """A connection, or BackendUnreachable when the database cannot be reached: nothing was sent.

    Kept apart from the statements so that a refused connection is known to
    be one (``arcana.resilience.guard`` retries even a write after it).
    """
    try:
        return engine.connect()
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise _unavailable(BackendUnreachable, what, "unreachable", exc) from exc


def _unavailable(
    kind: type[ServiceUnavailable], what: str, state: str, exc: sa_exc.SQLAlchemyError
) -> ServiceUnavailable:
    """The database failed at the connection level: logged once (without data), answered 503 with Retry-After."""
    cause = describe(exc)
    logger.warning("%s: database %s: %s", what, state, cause)
    return kind(
        f"{what}: the database is unavailable; try again later", retry_after=UNAVAILABLE_RETRY_AFTER_S, detail=cause
    )


def _commit_point(call: CallBudget, what: str) -> None:
    """Mark the call, then refuse to commit if its deadline passed (the transaction then rolls back).

    The mark comes first: the executor's guard fires only after the deadline,
    so a commit it could miss is one already marked; a refused commit clears
    the mark again, since this transaction then saves nothing.
    """
    before = call.may_have_saved
    call.may_have_saved = True
    if call.deadline and time.monotonic() >= call.deadline:
        call.may_have_saved = before
        raise ServiceUnavailable(
            f"{what}: the call ran out of time before the change was saved; nothing was saved",
            retry_after=RETRY_AFTER_S,
        )


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
