"""The store: plugin-scoped documents and key-value entries.

Revision ID: 0001_store
Revises:
Create Date: 2025-11-25

Mirrors ``arcana_host.store.schema`` (a test compares the two).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_store"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _name(length: int) -> sa.types.TypeEngine[str]:
    """Strings compared byte-wise on both backends (PostgreSQL's "C" collation = SQLite's BINARY)."""
    return sa.String(length).with_variant(sa.String(length, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "store_documents",
        sa.Column("plugin", _name(64), primary_key=True),
        sa.Column("collection", _name(64), primary_key=True),
        sa.Column("id", _name(128), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _name(32), nullable=False),
        sa.Column("updated_at", _name(32), nullable=False),
        sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
    )
    op.create_index("ix_store_documents_created", "store_documents", ["plugin", "collection", "created_at"])
    op.create_table(
        "store_kv",
        sa.Column("plugin", _name(64), primary_key=True),
        sa.Column("key", _name(256), primary_key=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("num", sa.BigInteger(), nullable=True),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
    )
    op.create_index("ix_store_kv_expires", "store_kv", ["plugin", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_store_kv_expires", table_name="store_kv")
    op.drop_table("store_kv")
    op.drop_index("ix_store_documents_created", table_name="store_documents")
    op.drop_table("store_documents")
