"""Users in the kernel's database: email (unique, case-insensitive), roles, disabled flag."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from arcana.auth.schema import users
from arcana.database import map_db_errors, writer
from arcana.errors import Conflict, NotFound, ValidationFailed

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
ROLE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
MIN_PASSWORD = 8


@dataclass(frozen=True)
class User:
    id: str
    email: str
    password_hash: str
    roles: tuple[str, ...]
    disabled: bool
    created_at: float
    updated_at: float

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
    email = email.strip().lower()
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
        row.id, row.email, row.password_hash, tuple(row.roles), bool(row.disabled), row.created_at, row.updated_at
    )


class Users:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def by_email(self, email: str) -> User | None:
        with map_db_errors("auth"), self._engine.connect() as c:
            row = c.execute(sa.select(users).where(users.c.email == email.strip().lower())).first()
        return _user(row) if row else None

    def get(self, user_id: str) -> User:
        with map_db_errors("auth"), self._engine.connect() as c:
            row = c.execute(sa.select(users).where(users.c.id == user_id)).first()
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
        changes["updated_at"] = time.time()
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            done = c.execute(users.update().where(users.c.id == user_id).values(**changes)).rowcount
        if not done:
            raise NotFound(f"no user {user_id}")
        return self.get(user_id)

    def delete(self, user_id: str) -> None:
        with map_db_errors("auth"), writer(self._engine).begin() as c:
            if not c.execute(users.delete().where(users.c.id == user_id)).rowcount:
                raise NotFound(f"no user {user_id}")

    def page(self, page: int, size: int) -> tuple[list[User], int]:
        with map_db_errors("auth"), self._engine.connect() as c:
            total = c.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()
            rows = c.execute(
                sa.select(users).order_by(users.c.created_at, users.c.id).limit(size).offset((page - 1) * size)
            ).all()
        return [_user(r) for r in rows], int(total)
