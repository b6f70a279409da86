"""Users in the kernel's database: email (unique, case-insensitive), roles, disabled flag.

Every read returns the user's token epoch with the row, in one statement
(an outer join on ``auth_token_epochs``), so a token issued from that read
carries the epoch that was current when the row was: a revocation committed
after the read bumps the epoch past it (see ``arcana.auth.revocation``).
Writes that must be atomic with a revocation take the caller's connection.
"""

from __future__ import annotations

import re
import time
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from arcana.auth.schema import token_epochs, users
from arcana.database import map_db_errors, writer
from arcana.errors import Conflict, NotFound, ValidationFailed

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
# RFC 5321: a path is at most 256 octets including the angle brackets.
MAX_EMAIL_CHARS = 254
ROLE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8
# The role that administers users; at least one enabled user keeps it once one has it.
ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    password_hash: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: float
    updated_at: float
    # Access tokens carry the epoch they were issued at; revocations bump it (0: never revoked).
    token_epoch: int = 0

    @property
    def is_enabled_admin(self) -> bool:
        return ADMIN_ROLE in self.roles and not self.disabled

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "roles": list(self.roles),
            "disabled": self.disabled,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def normalize_email(email: str) -> str:
    """Trimmed and lower-cased; at most 254 characters, no control or format characters, one @.

    The same rule at login and at creation: an address that cannot be
    created cannot be tried, so a login's email (and the failed-login
    tracker's key) is bounded before any work is done for it.
    """
    email = email.strip().lower()
    if len(email) > MAX_EMAIL_CHARS:
        raise ValidationFailed(f"email must be at most {MAX_EMAIL_CHARS} characters")
    # NUL, other C0/C1 controls, and format characters such as U+202E (which reorders what an admin sees).
    if any(unicodedata.category(ch).startswith("C") for ch in email):
        raise ValidationFailed("email must not contain control or format characters")
    if not EMAIL_RE.match(email):
        raise ValidationFailed("email is not a valid address")
    return email


def check_roles(roles: object) -> tuple[str, ...]:
    if not isinstance(roles, list) or not all(isinstance(r, str) and ROLE_RE.match(r) for r in roles):
        raise ValidationFailed("roles must be a list of lowercase role names")
    return tuple(sorted(set(roles)))


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"password must be at least {MIN_PASSWORD} characters")
    return password


def _user(row: Any) -> User:
    return User(
        row.id,
        row.email,
        row.password_hash,
        tuple(row.roles),
        bool(row.disabled),
        row.created_at,
        row.updated_at,
        int(row.token_epoch),
    )


# A user row with its token epoch, read in one statement.
_WITH_EPOCH = sa.select(users, sa.func.coalesce(token_epochs.c.epoch, 0).label("token_epoch")).select_from(
    users.outerjoin(token_epochs, token_epochs.c.subject == users.c.id)
)


class Users:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def by_email(self, email: str) -> User | None:
        with map_db_errors("auth"), self._engine.connect() as c:
            row = c.execute(_WITH_EPOCH.where(users.c.email == email.strip().lower())).first()
        return _user(row) if row else None

    def get(self, user_id: str) -> User:
        with map_db_errors("auth"), self._engine.connect() as c:
            return self.get_in(c, user_id)

    @staticmethod
    def get_in(c: sa.Connection, user_id: str) -> User:
        row = c.execute(_WITH_EPOCH.where(users.c.id == user_id)).first()
        if row is None:
            raise NotFound(f"no user {user_id}")
        return _user(row)

    def create(self, email: str, password_hash: str, roles: tuple[str, ...]) -> User:
        now = time.time()
        values = {
            "id": uuid.uuid4().hex,
            "email": normalize_email(email),
            "password_hash": password_hash,
            "roles": list(roles),
            "disabled": False,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with map_db_errors("auth"), writer(self._engine).begin() as c:
                c.execute(users.insert().values(**values))
        except sa.exc.IntegrityError:
            raise Conflict("a user with this email already exists") from None
        return self.get(str(values["id"]))

    def update(self, user_id: str, **changes: Any) -> User:
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            self.update_in(c, user_id, changes)
        return self.get(user_id)

    @staticmethod
    def update_in(c: sa.Connection, user_id: str, changes: dict[str, Any]) -> None:
        values = {**changes, "updated_at": time.time()}
        if not c.execute(users.update().where(users.c.id == user_id).values(**values)).rowcount:
            raise NotFound(f"no user {user_id}")

    @staticmethod
    def delete_in(c: sa.Connection, user_id: str) -> None:
        if not c.execute(users.delete().where(users.c.id == user_id)).rowcount:
            raise NotFound(f"no user {user_id}")

    @staticmethod
    def lock_enabled_admins(c: sa.Connection) -> list[str]:
        """The ids of enabled admins, their rows locked until the transaction ends (PostgreSQL).

        Locked in id order, so two transactions that each remove an admin
        queue instead of deadlocking; SQLite's BEGIN IMMEDIATE already
        serializes writers. Roles are a JSON list: the LIKE narrows the rows,
        Python decides.
        """
        rows = c.execute(
            sa.select(users.c.id, users.c.roles)
            .where(users.c.disabled.is_(False), sa.cast(users.c.roles, sa.Text).like(f'%"{ADMIN_ROLE}"%'))
            .order_by(users.c.id)
            .with_for_update()
        ).all()
        return [str(r.id) for r in rows if ADMIN_ROLE in r.roles]

    def page(self, page: int, size: int) -> tuple[list[User], int]:
        with map_db_errors("auth"), self._engine.connect() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()
            rows = c.execute(
                _WITH_EPOCH.order_by(users.c.created_at, users.c.id).limit(size).offset((page - 1) * size)
            ).all()
        return [_user(r) for r in rows], int(total)
