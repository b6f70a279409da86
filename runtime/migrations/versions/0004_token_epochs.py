"""Identity: per-subject token epochs, so that access tokens can be revoked before they expire.

Revision ID: 0004_token_epochs
Revises: 0003_store_order_index
Create Date: 2026-12-02

Mirrors ``arcana.auth.schema.token_epochs``. A new, empty table: nothing to
backfill (a subject without a row has never been revoked).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_token_epochs"
down_revision: str | Sequence[str] | None = "0003_store_order_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "auth_token_epochs",
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("auth_token_epochs")
