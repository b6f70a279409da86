"""Access-token revocation: a per-subject epoch in the database, checked on every authenticated request.

Access tokens are JWTs that live ``auth.access_ttl_s``; without this, a
token outlived logout, disable, delete, demotion and a password change.
Each of those (and refresh-token reuse) bumps the subject's row in
``auth_token_epochs``: ``epoch`` + 1 and ``revoked_at`` = now. Deleted users
keep their row as a tombstone. At authentication, a token is refused when:

- it carries ``arcana_epoch`` (every token the kernel issues at login and
  refresh) lower than the subject's epoch. The epoch is read with the user
  row in one statement (``arcana.auth.users``), so a revocation that
  commits while a login is running still catches that login's token, and a
  token issued just after a revocation, in the same second, is accepted;
- it has no ``arcana_epoch`` (an independent issuer's token, or one a plugin
  issued with ``auth_issue_token``) and its ``iat`` is not after
  ``revoked_at``. ``iat`` has whole seconds, so such a token issued in the
  same second as the revocation is refused too: the safe side.

A subject with no row was never revoked, so tokens of subjects the kernel
does not know (an independent issuer's) are untouched.

Each process caches a subject's row, or its absence, for
``auth.revocation_cache_s`` (default 1 s), so an authenticated request costs
a dictionary lookup and at most one primary-key read per subject per
interval. The process that revokes drops its own entry at once (the next
request is refused); other processes sharing the database refuse the token
within ``revocation_cache_s``. Larger values mean fewer reads and a longer
window for a revoked token elsewhere; 0 reads the database on every request.
When the database cannot be read, authentication fails (503): closed, not open.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from arcana.auth.schema import token_epochs as table
from arcana.database import map_db_errors

# Subjects cached per process; the least recently filled goes first when full.
MAX_CACHED_SUBJECTS = 10_000


@dataclass(frozen=True, slots=True)
class Revocation:
    """A subject's latest revocation: tokens from before it are refused."""

    epoch: int
    revoked_at: float

    def admits(self, issued_at: int, epoch: int | None) -> bool:
        """Whether a token issued at ``issued_at`` (and ``epoch``, when it carries one) is still good."""
        if epoch is not None:
            return epoch >= self.epoch
        return issued_at > self.revoked_at


class Revocations:
    def __init__(self, engine: Engine, cache_s: float, max_cached: int = MAX_CACHED_SUBJECTS) -> None:
        self._engine = engine
        self._cache_s = cache_s
        self._max_cached = max_cached
        # subject -> (monotonic expiry, its revocation or None)
        self._cache: OrderedDict[str, tuple[float, Revocation | None]] = OrderedDict()
        # Bumped by every local revocation: a read that raced one is used once, never cached.
        self._generation = 0
        self._lock = threading.Lock()

    def admits(self, subject: str, issued_at: int, epoch: int | None) -> bool:
        found = self.latest(subject)
        return found is None or found.admits(issued_at, epoch)

    def latest(self, subject: str) -> Revocation | None:
        """The subject's latest revocation, from the cache while it is fresh."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(subject)
            if cached is not None and cached[0] > now:
                return cached[1]
            generation = self._generation
        found = self._read(subject)
        if self._cache_s > 0:
            with self._lock:
                if generation == self._generation:
                    self._cache[subject] = (now + self._cache_s, found)
                    self._cache.move_to_end(subject)
                    while len(self._cache) > self._max_cached:
                        self._cache.popitem(last=False)
        return found

    def _read(self, subject: str) -> Revocation | None:
        with map_db_errors("auth"), self._engine.connect() as c:
            row = c.execute(sa.select(table.c.epoch, table.c.revoked_at).where(table.c.subject == subject)).first()
        return None if row is None else Revocation(int(row.epoch), float(row.revoked_at))

    @staticmethod
    def bump(c: sa.Connection, subject: str) -> None:
        """Revoke every token of ``subject`` issued so far, in the caller's transaction; then call ``forget``."""
        now = time.time()
        insert = postgresql.insert if c.dialect.name == "postgresql" else sqlite.insert
        statement = insert(table).values(subject=subject, epoch=1, revoked_at=now)
        c.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.subject], set_={"epoch": table.c.epoch + 1, "revoked_at": now}
            )
        )

    def forget(self, subject: str) -> None:
        """After a committed ``bump``: this process reads the subject afresh on its next request."""
        with self._lock:
            self._cache.pop(subject, None)
            self._generation += 1
