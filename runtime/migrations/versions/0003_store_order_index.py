"""The store's default order (created_at, then id) served by one index, without a sort.

Revision ID: 0003_store_order_index
Revises: 0002_identity
Create Date: 2026-11-25

Mirrors ``arcana_host.store.schema``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_store_order_index"
down_revision: str | Sequence[str] | None = "0002_identity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_store_documents_created", table_name="store_documents")
    op.create_index("ix_store_documents_order", "store_documents", ["plugin", "collection", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_store_documents_order", table_name="store_documents")
    op.create_index("ix_store_documents_created", "store_documents", ["plugin", "collection", "created_at"])
