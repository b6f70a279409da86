"""The identity tables (mirrored by migrations 0002_identity and 0004_token_epochs)."""

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

# One row per token subject that was ever revoked (a user id; deleted users keep
# theirs as a tombstone). Access tokens issued at an older epoch are refused;
# see arcana.auth.revocation.
token_epochs = sa.Table(
    "auth_token_epochs",
    metadata,
    sa.Column("subject", sa.String(255), primary_key=True),
    sa.Column("epoch", sa.Integer(), nullable=False),
    sa.Column("revoked_at", sa.Float(), nullable=False),  # time.time() of the latest bump
)
