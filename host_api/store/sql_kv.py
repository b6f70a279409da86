"""The key-value half of the SQL store.

An integer value lives in the ``num`` column so that ``kv_incr`` is one
atomic statement on both backends, across threads and processes::

    INSERT INTO store_kv (plugin, key, num) VALUES (:p, :k, :by)
    ON CONFLICT (plugin, key) DO UPDATE SET num = store_kv.num + :by   -- (0 + by when expired)
    WHERE store_kv.num IS NOT NULL OR <expired>
    RETURNING num

No row back means the key holds a non-integer. Expired keys read as missing
and are purged now and then by ``kv_set``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from arcana.database import transaction
from arcana.errors import ValidationFailed
from arcana.types import CallContext
from arcana_host.store.schema import kv
from arcana_host.store.types import KvEntry

# Every this many kv_set calls, one also deletes the caller's expired keys.
PURGE_EVERY = 256
INDEX = ["plugin", "key"]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _encode(value: Any) -> tuple[str | None, int | None]:
    """(JSON text, None) for most values; (None, n) for a 64-bit integer, which kv_incr can add to."""
    if type(value) is int and -(2**63) <= value < 2**63:
        return None, value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False), None


class SqlKv:
    def __init__(self, engine: Engine, writer: Engine, insert: Callable[..., Any]) -> None:
        self._engine = engine
        self._writer = writer
        self._insert = insert
        self._sets = itertools.count(1)

    @staticmethod
    def _live(now: int) -> sa.ColumnElement[bool]:
        return sa.or_(kv.c.expires_at.is_(None), kv.c.expires_at > now)

    def get(self, plugin: str, key: str, call: CallContext | None = None) -> KvEntry:
        stmt = sa.select(kv.c.value, kv.c.num).where(kv.c.plugin == plugin, kv.c.key == key, self._live(_now_ms()))
        with transaction(self._engine, "store", call) as conn:
            row = conn.execute(stmt).first()
        if row is None:
            return KvEntry(False)
        return KvEntry(True, row.num if row.num is not None else json.loads(row.value))

    def set(self, plugin: str, key: str, value: Any, ttl_s: float | None, call: CallContext | None = None) -> None:
        now = _now_ms()
        text, num = _encode(value)
        expires = None if ttl_s is None else now + max(1, round(ttl_s * 1000))
        insert = self._insert(kv).values(plugin=plugin, key=key, value=text, num=num, expires_at=expires)
        stmt = insert.on_conflict_do_update(
            index_elements=INDEX,
            set_={"value": insert.excluded.value, "num": insert.excluded.num, "expires_at": insert.excluded.expires_at},
        )
        with transaction(self._writer, "store", call, write=True) as conn:
            conn.execute(stmt)
            if next(self._sets) % PURGE_EVERY == 0:
                conn.execute(sa.delete(kv).where(kv.c.plugin == plugin, kv.c.expires_at <= now))

    def delete(self, plugin: str, key: str, call: CallContext | None = None) -> bool:
        """Remove the key; whether it was live (an expired key is removed too, and reported absent)."""
        now = _now_ms()
        stmt = sa.delete(kv).where(kv.c.plugin == plugin, kv.c.key == key).returning(kv.c.expires_at)
        with transaction(self._writer, "store", call, write=True) as conn:
            row = conn.execute(stmt).first()
        return row is not None and (row.expires_at is None or row.expires_at > now)

    def incr(self, plugin: str, key: str, by: int, call: CallContext | None = None) -> int:
        now = _now_ms()
        expired = sa.and_(kv.c.expires_at.is_not(None), kv.c.expires_at <= now)
        insert = self._insert(kv).values(plugin=plugin, key=key, value=None, num=by, expires_at=None)
        stmt = insert.on_conflict_do_update(
            index_elements=INDEX,
            set_={
                "num": sa.case((expired, sa.literal(by, sa.BigInteger)), else_=kv.c.num + by),
                "value": sa.null(),
                "expires_at": sa.case((expired, sa.null()), else_=kv.c.expires_at),
            },
            where=sa.or_(kv.c.num.is_not(None), expired),
        ).returning(kv.c.num)
        with transaction(self._writer, "store", call, write=True) as conn:
            result = conn.execute(stmt).scalar()
        if result is None:
            raise ValidationFailed(f"key '{key[:80]}' holds a value that is not an integer; kv_incr needs an integer")
        return int(result)
