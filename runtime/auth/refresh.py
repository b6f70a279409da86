"""Refresh tokens: random, stored hashed, rotated on use; reuse revokes the whole family."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from arcana.auth.schema import refresh_tokens as table
from arcana.database import map_db_errors, writer


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    user_id: str | None
    token: str | None = None
    reused: bool = False


class RefreshTokens:
    def __init__(self, engine: Engine, ttl_s: int) -> None:
        self._engine = engine
        self._ttl = ttl_s

    def _insert(self, conn: sa.Connection, user_id: str, family: str) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        conn.execute(
            table.insert().values(
                token_hash=digest(token),
                family_id=family,
                user_id=user_id,
                created_at=now,
                expires_at=now + self._ttl,
                used_at=None,
                revoked=False,
            )
        )
        return token

    def start_family(self, user_id: str) -> str:
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            return self._insert(c, user_id, uuid.uuid4().hex)

    def rotate(self, token: str) -> Rotation:
        """A fresh token for a live one; presenting a used token revokes its family."""
        now = time.time()
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            row = c.execute(sa.select(table).where(table.c.token_hash == digest(token)).with_for_update()).first()
            if row is None or row.revoked or row.expires_at <= now:
                return Rotation(None)
            if row.used_at is not None:
                c.execute(table.update().where(table.c.family_id == row.family_id).values(revoked=True))
                return Rotation(row.user_id, reused=True)
            # The guard on used_at makes two racing rotations of one token yield one winner.
            won = c.execute(
                table.update()
                .where(table.c.token_hash == row.token_hash, table.c.used_at.is_(None))
                .values(used_at=now)
            ).rowcount
            if not won:
                return Rotation(None)
            return Rotation(row.user_id, self._insert(c, row.user_id, row.family_id))

    def revoke(self, token: str) -> str | None:
        """Revoke the token's family (logout); the user id, or None when unknown."""
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            row = c.execute(
                sa.select(table.c.family_id, table.c.user_id).where(table.c.token_hash == digest(token))
            ).first()
            if row is None:
                return None
            c.execute(table.update().where(table.c.family_id == row.family_id).values(revoked=True))
            return str(row.user_id)

    def revoke_user(self, user_id: str) -> None:
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            c.execute(table.update().where(table.c.user_id == user_id).values(revoked=True))
