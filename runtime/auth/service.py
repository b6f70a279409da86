"""Login, refresh, logout and user administration: the transport-agnostic auth core.

Revocation (``arcana.auth.revocation``): disabling or deleting a user,
changing their roles or password, logging out and refresh-token reuse all
bump the user's token epoch, in the same transaction as the change, so the
access tokens issued before it are refused on the next request. A role
change keeps the refresh families: the client refreshes and gets a token
with the new roles. Logout ends its refresh family (every family with
``everywhere``) and every access token issued before it; the user's other
sessions keep their refresh tokens and refresh once.

At least one enabled admin stays once there is one: removing the last
admin's role, disabling or deleting them is a 409.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import sqlalchemy as sa

from arcana.auth.limits import FailureWindow, address_key
from arcana.auth.passwords import Passwords
from arcana.auth.refresh import DeadlinePassed, RefreshTokens
from arcana.auth.revocation import Revocations
from arcana.auth.tokens import Tokens
from arcana.auth.users import ADMIN_ROLE, User, Users, check_password, check_roles, normalize_email
from arcana.config import ArcanaConfig
from arcana.database import Database, map_db_errors, writer
from arcana.errors import (
    Conflict,
    InvalidCredentials,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from arcana.events import ADMIN_USER_CHANGED, AUTH_LOGIN, AUTH_LOGIN_FAILED, AUTH_LOGOUT, AUTH_TOKEN_REUSE, EventBus
from arcana.ratelimit import RATE_LIMITED
from arcana.types import Principal

BAD_LOGIN = "invalid email or password"
LAST_ADMIN = "this is the last enabled admin: make another user an admin first"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


@dataclass(frozen=True)
class _Change:
    """A checked user update: the column values, and what they revoke."""

    values: dict[str, Any]

    def keeps_admin(self, before: User) -> bool:
        roles = self.values.get("roles", before.roles)
        return ADMIN_ROLE in roles and not self.values.get("disabled", before.disabled)

    def revokes_access(self, before: User) -> bool:
        roles_changed = "roles" in self.values and tuple(self.values["roles"]) != before.roles
        return roles_changed or bool(self.values.get("disabled")) or "password_hash" in self.values

    @property
    def revokes_sessions(self) -> bool:
        return bool(self.values.get("disabled")) or "password_hash" in self.values


class AuthService:
    def __init__(self, config: ArcanaConfig, database: Database, events: EventBus) -> None:
        auth = config.auth
        self.database = database
        self.tokens = Tokens(auth)
        self.passwords = Passwords(auth)
        self.users = Users(database.engine)
        self.refresh_tokens = RefreshTokens(database.engine, auth.refresh_ttl_s, auth.refresh_reuse_grace_s)
        self.revocations = Revocations(database.engine, auth.revocation_cache_s)
        self.events = events
        window, keys = auth.login_window_s, auth.login_tracker_max_keys
        self._per_account = FailureWindow(auth.login_failures_per_account, window, keys)
        self._per_address = FailureWindow(auth.login_failures_per_address, window, keys)

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        with map_db_errors("auth"), writer(self.database.engine).begin() as c:
            yield c

    # ---- login, refresh, logout

    def login(self, email: object, password: object, address: str, deadline: float | None = None) -> TokenPair:
        """Email and password as the client sent them: their types are checked here, at the boundary.

        ``deadline`` (``time.monotonic()``) is the caller's: past it, nothing
        is stored, since nobody is left to receive the tokens.
        """
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            raise ValidationFailed("email and password are required strings")
        key, where = normalize_email(email), address_key(address)
        wait = max(self._per_account.blocked_for(key), self._per_address.blocked_for(where))
        if wait:
            self.events.emit(AUTH_LOGIN_FAILED, {"email": key, "address": address, "reason": "rate_limited"})
            RATE_LIMITED.labels("login").inc()
            raise RateLimited("too many failed logins; try again later", retry_after=wait)
        self._before(deadline, key, address)  # no Argon2 run for a caller that has gone
        user = self.users.by_email(key)
        ok = self.passwords.verify(user.password_hash if user else None, password)  # one Argon2 run either way
        if user is None or not ok or user.disabled:
            self._per_account.fail(key)
            self._per_address.fail(where)
            reason = "disabled" if user is not None and ok else "credentials"
            self.events.emit(AUTH_LOGIN_FAILED, {"email": key, "address": address, "reason": reason})
            raise InvalidCredentials(BAD_LOGIN)
        self._before(deadline, key, address)
        self._per_account.clear(key)
        if self.passwords.needs_rehash(user.password_hash):
            self.users.update(user.id, password_hash=self.passwords.hash(password))
        try:
            session = self.refresh_tokens.start_family(user.id, deadline)
        except DeadlinePassed:
            self._deadline_passed(key, address)
        self.events.emit(AUTH_LOGIN, {"user_id": user.id, "email": user.email, "address": address}, principal=user.id)
        return self._pair(user, session)

    def _before(self, deadline: float | None, key: str, address: str) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            self._deadline_passed(key, address)

    def _deadline_passed(self, key: str, address: str) -> NoReturn:
        self.events.emit(AUTH_LOGIN_FAILED, {"email": key, "address": address, "reason": "deadline"})
        raise ServiceUnavailable("the login took longer than the caller's deadline; nothing was stored")

    def refresh(self, refresh_token: object) -> TokenPair:
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ValidationFailed("refresh_token is required")
        rotation = self.refresh_tokens.rotate(refresh_token)
        if rotation.reused and rotation.user_id:
            self.revocations.forget(rotation.user_id)
            self.events.emit(AUTH_TOKEN_REUSE, {"user_id": rotation.user_id}, principal=rotation.user_id)
        if rotation.token is None or rotation.user_id is None:
            raise Unauthorized("the refresh token is invalid, expired or revoked")
        try:
            user = self.users.get(rotation.user_id)  # with its epoch: read after the rotation, as at login
        except NotFound:  # deleted while this refresh ran: its family is revoked by now
            raise Unauthorized("the refresh token is invalid, expired or revoked") from None
        if user.disabled:
            self.refresh_tokens.revoke(rotation.token)
            raise Unauthorized("the account is disabled")
        return self._pair(user, rotation.token)

    def logout(self, refresh_token: object, everywhere: object = False) -> None:
        """End the token's refresh family (every one of the user's with ``everywhere``) and all their access tokens."""
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ValidationFailed("refresh_token is required")
        if not isinstance(everywhere, bool):
            raise ValidationFailed("everywhere must be true or false")
        with self._transaction() as c:
            user_id = self.refresh_tokens.revoke_in(c, refresh_token, everywhere)
            if user_id is not None:
                Revocations.bump(c, user_id)
        if user_id is not None:
            self.revocations.forget(user_id)
            self.events.emit(AUTH_LOGOUT, {"user_id": user_id}, principal=user_id)

    def _pair(self, user: User, refresh_token: str) -> TokenPair:
        access, ttl = self.tokens.issue(user.id, user.roles, epoch=user.token_epoch)
        return TokenPair(access, refresh_token, ttl)

    # ---- the `auth` host capability's view (arcana_host.identity.Identity)

    def hash_password(self, password: str) -> str:
        return self.passwords.hash(password)

    def verify_password(self, stored: str, password: str) -> bool:
        if not self.passwords.affordable(stored):
            raise ValidationFailed("the hash asks for more Argon2 memory, time or lanes than this kernel verifies")
        return self.passwords.verify(stored, password)

    def issue_token(self, sub: str, roles: list[str], ttl_s: int) -> tuple[str, int]:
        return self.tokens.issue(sub, roles, ttl_s)

    def authenticate(self, authorization: str) -> Principal | None:
        """`Bearer <jwt>` -> principal; no header -> None; anything else, or a revoked token -> Unauthorized."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        principal, epoch = self.tokens.verify_with_epoch(token.strip())
        if not self.revocations.admits(principal.sub, principal.issued_at, epoch):
            raise Unauthorized("the access token has been revoked; refresh it or log in again")
        return principal

    # ---- administration (role admin is checked by the edge)

    def list_users(self, page: int, size: int) -> tuple[list[User], int]:
        return self.users.page(page, size)

    def get_user(self, user_id: str) -> User:
        return self.users.get(user_id)

    def create_user(self, email: str, password: object, roles: object) -> User:
        secret = check_password(password)
        user = self.users.create(normalize_email(email), self.passwords.hash(secret), check_roles(roles))
        self.events.emit(ADMIN_USER_CHANGED, {"user_id": user.id, "change": "created"})
        return user

    def update_user(self, user_id: str, changes: dict[str, Any]) -> User:
        change = self._checked(changes)  # Argon2 for a new password runs here, outside the write transaction
        with self._transaction() as c:
            before = self.users.get_in(c, user_id)
            if before.is_enabled_admin and not change.keeps_admin(before):
                self._keep_an_admin(c, user_id)
            self.users.update_in(c, user_id, change.values)
            revoked = change.revokes_access(before)
            if revoked:
                Revocations.bump(c, user_id)
            if change.revokes_sessions:
                self.refresh_tokens.revoke_user_in(c, user_id)
        if revoked:
            self.revocations.forget(user_id)
        for name in sorted(set(changes) - {"password"}):
            self.events.emit(ADMIN_USER_CHANGED, {"user_id": user_id, "change": name})
        return self.users.get(user_id)

    def delete_user(self, user_id: str) -> None:
        with self._transaction() as c:
            self._keep_an_admin(c, user_id)
            self.users.delete_in(c, user_id)
            Revocations.bump(c, user_id)  # the row stays as a tombstone: the user's tokens stay refused
            self.refresh_tokens.revoke_user_in(c, user_id)
        self.revocations.forget(user_id)
        self.events.emit(ADMIN_USER_CHANGED, {"user_id": user_id, "change": "deleted"})

    @staticmethod
    def _keep_an_admin(c: sa.Connection, user_id: str) -> None:
        """409 when ``user_id`` is the only enabled admin (checked under the admins' row locks)."""
        admins = Users.lock_enabled_admins(c)
        if admins == [user_id]:
            raise Conflict(LAST_ADMIN)

    def _checked(self, changes: dict[str, Any]) -> _Change:
        unknown = set(changes) - {"roles", "disabled", "password"}
        if unknown or not changes:
            raise ValidationFailed(
                f"updatable fields are roles, disabled, password; got {sorted(unknown) or 'nothing'}"
            )
        values: dict[str, Any] = {}
        if "roles" in changes:
            values["roles"] = list(check_roles(changes["roles"]))
        if "disabled" in changes:
            if not isinstance(changes["disabled"], bool):
                raise ValidationFailed("disabled must be true or false")
            values["disabled"] = changes["disabled"]
        if "password" in changes:
            values["password_hash"] = self.passwords.hash(check_password(changes["password"]))
        return _Change(values)
