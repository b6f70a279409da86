"""The store on SQLAlchemy: SQLite (embedded default) or PostgreSQL, one code path.

Writes are single statements where the database can decide atomically:
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` for an upsert,
``UPDATE ... WHERE version = :expected RETURNING`` for a conditional
replace (so a stale version changes nothing), and a second look only to
tell CONFLICT from NOT_FOUND. Write transactions take SQLite's write lock at
``BEGIN`` (``arcana.database.writer``); PostgreSQL reads a page and its
total from one snapshot (REPEATABLE READ). Every transaction is bounded by
the plugin call's deadline (``arcana.database.transaction``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from arcana.database import transaction, writer
from arcana.errors import ArcanaError, Conflict, NotFound, VersionConflict
from arcana.types import CallContext
from arcana_host.store import filters
from arcana_host.store.schema import documents
from arcana_host.store.sql_kv import SqlKv
from arcana_host.store.types import DeleteOp, Document, KvEntry, Page, PutOp, Query

COLUMNS = (documents.c.id, documents.c.version, documents.c.created_at, documents.c.updated_at, documents.c.doc)


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _document(row: Row[Any, Any, Any, Any, Any]) -> Document:
    return Document(row.id, row.version, row.created_at, row.updated_at, row.doc)


def _key(plugin: str, collection: str, id: str) -> sa.ColumnElement[bool]:
    return sa.and_(documents.c.plugin == plugin, documents.c.collection == collection, documents.c.id == id)


class SqlStoreBackend:
    """``StoreBackend`` over a SQLAlchemy engine (see ``arcana.database.create_db_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer(engine)
        postgres = engine.dialect.name == "postgresql"
        self._snapshot = engine.execution_options(isolation_level="REPEATABLE READ") if postgres else engine
        self._insert = postgresql.insert if postgres else sqlite.insert
        self._view = filters.json_view(engine.dialect.name)
        self._kv = SqlKv(engine, self._writer, self._insert)

    @contextmanager
    def _read(self, engine: Engine, call: CallContext | None) -> Iterator[Connection]:
        with transaction(engine, "store", call) as conn:
            yield conn

    @contextmanager
    def _write(self, call: CallContext | None) -> Iterator[Connection]:
        with transaction(self._writer, "store", call, write=True) as conn:
            yield conn

    def get(self, plugin: str, collection: str, id: str, call: CallContext | None = None) -> Document:
        with self._read(self._engine, call) as conn:
            row = conn.execute(sa.select(*COLUMNS).where(_key(plugin, collection, id))).first()
        if row is None:
            raise NotFound(f"no document '{id}' in collection '{collection}'")
        return _document(row)

    def put(self, plugin: str, op: PutOp, call: CallContext | None = None) -> Document:
        with self._write(call) as conn:
            return self._put(conn, plugin, op)

    def delete(self, plugin: str, op: DeleteOp, call: CallContext | None = None) -> None:
        with self._write(call) as conn:
            self._delete(conn, plugin, op)

    def batch(
        self, plugin: str, ops: Sequence[PutOp | DeleteOp], call: CallContext | None = None
    ) -> list[Document | None]:
        results: list[Document | None] = []
        with self._write(call) as conn:
            for i, op in enumerate(ops):
                try:
                    if isinstance(op, PutOp):
                        results.append(self._put(conn, plugin, op))
                    else:
                        self._delete(conn, plugin, op)
                        results.append(None)
                except ArcanaError as exc:  # the transaction rolls back as this leaves `with`
                    raise type(exc)(f"ops[{i}]: {exc.message}", code=exc.code) from exc
        return results

    def query(self, plugin: str, query: Query, call: CallContext | None = None) -> Page:
        scope = sa.and_(
            documents.c.plugin == plugin,
            documents.c.collection == query.collection,
            filters.where(self._view, query.conditions),
        )
        rows = (
            sa.select(*COLUMNS)
            .where(scope)
            .order_by(*filters.order_by(self._view, query.sort, query.descending))
            .limit(query.size)
            .offset((query.page - 1) * query.size)
        )
        with self._read(self._snapshot, call) as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(documents).where(scope)).scalar_one()
            items = [_document(r) for r in conn.execute(rows)]
        return Page(items, total, query.page, query.size)

    def _put(self, conn: Connection, plugin: str, op: PutOp) -> Document:
        id, now = op.id or uuid.uuid4().hex, now_iso()
        returning = (documents.c.version, documents.c.created_at)
        if op.expected_version is not None and op.expected_version > 0:
            stmt = (
                sa.update(documents)
                .where(_key(plugin, op.collection, id), documents.c.version == op.expected_version)
                .values(doc=op.body, version=documents.c.version + 1, updated_at=now)
                .returning(*returning)
            )
            row = conn.execute(stmt).first()
            if row is None:
                self._explain_miss(conn, plugin, op.collection, id, op.expected_version)
        else:
            insert = self._insert(documents).values(
                plugin=plugin, collection=op.collection, id=id, version=1, created_at=now, updated_at=now, doc=op.body
            )
            if op.expected_version == 0:
                upsert = insert.on_conflict_do_nothing(index_elements=["plugin", "collection", "id"])
            else:
                upsert = insert.on_conflict_do_update(
                    index_elements=["plugin", "collection", "id"],
                    set_={"doc": insert.excluded.doc, "updated_at": now, "version": documents.c.version + 1},
                )
            row = conn.execute(upsert.returning(*returning)).first()
            if row is None:
                raise Conflict(f"document '{id}' already exists in collection '{op.collection}'")
        return Document(id, row.version, row.created_at, now, op.body)

    def _delete(self, conn: Connection, plugin: str, op: DeleteOp) -> None:
        stmt = sa.delete(documents).where(_key(plugin, op.collection, op.id))
        if op.expected_version is not None:
            stmt = stmt.where(documents.c.version == op.expected_version)
        if conn.execute(stmt).rowcount == 0:
            self._explain_miss(conn, plugin, op.collection, op.id, op.expected_version)

    @staticmethod
    def _explain_miss(conn: Connection, plugin: str, collection: str, id: str, expected: int | None) -> NoReturn:
        current = conn.execute(sa.select(documents.c.version).where(_key(plugin, collection, id))).scalar()
        if current is None:
            raise NotFound(f"no document '{id}' in collection '{collection}'")
        raise VersionConflict(f"document '{id}' is at version {current}, not {expected}; read it again and retry")

    def kv_get(self, plugin: str, key: str, call: CallContext | None = None) -> KvEntry:
        return self._kv.get(plugin, key, call)

    def kv_set(self, plugin: str, key: str, value: Any, ttl_s: float | None, call: CallContext | None = None) -> None:
        self._kv.set(plugin, key, value, ttl_s, call)

    def kv_delete(self, plugin: str, key: str, call: CallContext | None = None) -> bool:
        return self._kv.delete(plugin, key, call)

    def kv_incr(self, plugin: str, key: str, by: int, call: CallContext | None = None) -> int:
        return self._kv.incr(plugin, key, by, call)

    def close(self) -> None:
        """The engine belongs to the kernel's ``Database``, which disposes of it."""
