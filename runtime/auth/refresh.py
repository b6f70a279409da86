"""Refresh tokens: random, stored hashed, rotated on use; reuse revokes the whole family.

A token presented again within ``auth.refresh_reuse_grace_s`` of its
rotation is a double submit (a retried request, two tabs, a reply lost on
the way), not a theft: it gets a fresh token in the same family. The
successor it was rotated into stays valid too, because only the client knows
which reply it kept; the plaintext successor is never stored, so it cannot
be handed out again. Past the grace window, presenting a used token revokes
the family and every access token of the user (``Revocations.bump``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from arcana.auth.revocation import Revocations
from arcana.auth.schema import refresh_tokens as table
from arcana.database import map_db_errors, writer


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeadlinePassed(Exception):
    """The caller's deadline passed before a new session was committed; nothing was stored."""


@dataclass(frozen=True)
class Rotation:
    """The outcome of presenting a refresh token."""

    user_id: str | None
    token: str | None = None
    reused: bool = False


class RefreshTokens:
    def __init__(self, engine: Engine, ttl_s: int, reuse_grace_s: float = 0.0) -> None:
        self._engine = engine
        self._ttl = ttl_s
        self._grace = reuse_grace_s

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

    def start_family(self, user_id: str, deadline: float | None = None) -> str:
        """A new family's first token; with ``deadline`` (``time.monotonic()``), committed only before it."""
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            token = self._insert(c, user_id, uuid.uuid4().hex)
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlinePassed  # leaving the block rolls the insert back
            return token

    def rotate(self, token: str) -> Rotation:
        """A fresh token for a live one; presenting a used token after the grace window revokes its family."""
        now = time.time()
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            row = c.execute(sa.select(table).where(table.c.token_hash == digest(token)).with_for_update()).first()
            if row is None or row.revoked or row.expires_at <= now:
                return Rotation(None)
            if row.used_at is not None:
                if now - row.used_at < self._grace:  # a double submit: a sibling of the first successor
                    return Rotation(row.user_id, self._insert(c, row.user_id, row.family_id))
                c.execute(table.update().where(table.c.family_id == row.family_id).values(revoked=True))
                Revocations.bump(c, row.user_id)  # the thief's access tokens die with the family
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

    @staticmethod
    def revoke_in(c: sa.Connection, token: str, everywhere: bool) -> str | None:
        """Revoke the token's family, or all of its user's with ``everywhere``; the user id, or None when unknown."""
        row = c.execute(
            sa.select(table.c.family_id, table.c.user_id).where(table.c.token_hash == digest(token))
        ).first()
        if row is None:
            return None
        scope = table.c.user_id == row.user_id if everywhere else table.c.family_id == row.family_id
        c.execute(table.update().where(scope).values(revoked=True))
        return str(row.user_id)

    def revoke(self, token: str) -> str | None:
        """Revoke the token's family; the user id, or None when unknown."""
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            return self.revoke_in(c, token, everywhere=False)

    @staticmethod
    def revoke_user_in(c: sa.Connection, user_id: str) -> None:
        c.execute(table.update().where(table.c.user_id == user_id).values(revoked=True))
