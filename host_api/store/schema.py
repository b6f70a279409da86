"""The store's tables (created and upgraded by the kernel's Alembic migrations).

Every row is keyed by the owning plugin first: a plugin can only ever name its
own rows, because the backend adds ``plugin = <caller>`` to every statement.
Names and timestamps compare byte-wise on both backends (PostgreSQL's "C"
collation, SQLite's BINARY), so sorting gives the same order everywhere.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()


def _name(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


documents = sa.Table(
    "store_documents",
    metadata,
    sa.Column("plugin", _name(64), primary_key=True),
    sa.Column("collection", _name(64), primary_key=True),
    sa.Column("id", _name(128), primary_key=True),
    sa.Column("version", sa.BigInteger(), nullable=False),
    # ISO 8601 UTC with microseconds, fixed width: sorts as it reads.
    sa.Column("created_at", _name(32), nullable=False),
    sa.Column("updated_at", _name(32), nullable=False),
    # The document body, without the four metadata fields above.
    sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    # The default order of store_query (created_at, then id) reads this index in order.
    sa.Index("ix_store_documents_order", "plugin", "collection", "created_at", "id"),
)

kv = sa.Table(
    "store_kv",
    metadata,
    sa.Column("plugin", _name(64), primary_key=True),
    sa.Column("key", _name(256), primary_key=True),
    # Exactly one of these is set: an integer value lives in `num` (what
    # kv_incr adds to in one statement), any other value as JSON text.
    sa.Column("value", sa.Text(), nullable=True),
    sa.Column("num", sa.BigInteger(), nullable=True),
    # Milliseconds since the epoch; NULL = never expires.
    sa.Column("expires_at", sa.BigInteger(), nullable=True),
    sa.Index("ix_store_kv_expires", "plugin", "expires_at"),
)
