"""The identity tables (mirrored by migration 0002_identity)."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "auth_users",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # stored lower-cased
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("roles", sa.JSON(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, default=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
)

refresh_tokens = sa.Table(
    "auth_refresh_tokens",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),  # sha256 hex; the token itself is never stored
    sa.Column("family_id", sa.String(32), nullable=False, index=True),
    sa.Column("user_id", sa.String(32), nullable=False, index=True),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("expires_at", sa.Float(), nullable=False),
    sa.Column("used_at", sa.Float(), nullable=True),
    sa.Column("revoked", sa.Boolean(), nullable=False, default=False),
)
