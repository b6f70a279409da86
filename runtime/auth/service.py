"""Login, refresh, logout and user administration: the transport-agnostic auth core."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arcana.auth.limits import FailureWindow
from arcana.auth.passwords import Passwords
from arcana.auth.refresh import RefreshTokens
from arcana.auth.tokens import Tokens
from arcana.auth.users import User, Users, check_password, check_roles, normalize_email
from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import InvalidCredentials, RateLimited, Unauthorized, ValidationFailed
from arcana.events import ADMIN_USER_CHANGED, AUTH_LOGIN, AUTH_LOGIN_FAILED, AUTH_LOGOUT, AUTH_TOKEN_REUSE, KernelEvents
from arcana.types import Principal

BAD_LOGIN = "invalid email or password"


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


class AuthService:
    def __init__(self, config: ArcanaConfig, database: Database, events: KernelEvents) -> None:
        self.database = database
        self.tokens = Tokens(config.auth)
        self.passwords = Passwords(config.auth)
        self.users = Users(database.engine)
        self.refresh_tokens = RefreshTokens(database.engine, config.auth.refresh_ttl_s)
        self.events = events
        window = config.auth.login_window_s
        self._per_account = FailureWindow(config.auth.login_failures_per_account, window)
        self._per_address = FailureWindow(config.auth.login_failures_per_address, window)

    def login(self, email: object, password: object, address: str) -> TokenPair:
        """Email and password as the client sent them: their types are checked here, at the boundary."""
        if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
            raise ValidationFailed("email and password are required strings")
        key = email.strip().lower()
        wait = max(self._per_account.blocked_for(key), self._per_address.blocked_for(address))
        if wait:
            self.events.emit(AUTH_LOGIN_FAILED, {"email": key, "address": address, "reason": "rate_limited"})
            raise RateLimited("too many failed logins; try again later", retry_after=wait)
        user = self.users.by_email(key)
        ok = self.passwords.verify(user.password_hash if user else None, password)  # one Argon2 run either way
        if user is None or not ok or user.disabled:
            self._per_account.fail(key)
            self._per_address.fail(address)
            reason = "disabled" if user is not None and ok else "credentials"
            self.events.emit(AUTH_LOGIN_FAILED, {"email": key, "address": address, "reason": reason})
            raise InvalidCredentials(BAD_LOGIN)
        self._per_account.clear(key)
        if self.passwords.needs_rehash(user.password_hash):
            self.users.update(user.id, password_hash=self.passwords.hash(password))
        self.events.emit(AUTH_LOGIN, {"user_id": user.id, "email": user.email, "address": address})
        return self._pair(user, self.refresh_tokens.start_family(user.id))

    def refresh(self, refresh_token: object) -> TokenPair:
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ValidationFailed("refresh_token is required")
        rotation = self.refresh_tokens.rotate(refresh_token)
        if rotation.reused and rotation.user_id:
            self.events.emit(AUTH_TOKEN_REUSE, {"user_id": rotation.user_id})
        if rotation.token is None or rotation.user_id is None:
            raise Unauthorized("the refresh token is invalid, expired or revoked")
        user = self.users.get(rotation.user_id)
        if user.disabled:
            self.refresh_tokens.revoke(rotation.token)
            raise Unauthorized("the account is disabled")
        return self._pair(user, rotation.token)

    def logout(self, refresh_token: object) -> None:
        if not isinstance(refresh_token, str) or not refresh_token:
            raise ValidationFailed("refresh_token is required")
        user_id = self.refresh_tokens.revoke(refresh_token)
        if user_id is not None:
            self.events.emit(AUTH_LOGOUT, {"user_id": user_id})

    def _pair(self, user: User, refresh_token: str) -> TokenPair:
        access, ttl = self.tokens.issue(user.id, user.roles)
        return TokenPair(access, refresh_token, ttl)

    # ---- the `auth` host capability's view (arcana_host.identity.Identity)

    def hash_password(self, password: str) -> str:
        return self.passwords.hash(password)

    def verify_password(self, stored: str, password: str) -> bool:
        return self.passwords.verify(stored, password)

    def issue_token(self, sub: str, roles: list[str], ttl_s: int) -> tuple[str, int]:
        return self.tokens.issue(sub, roles, ttl_s)

    def authenticate(self, authorization: str) -> Principal | None:
        """`Bearer <jwt>` -> principal; no header -> None; anything else -> Unauthorized."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer <token>'")
        return self.tokens.verify(token.strip())

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
        user = self.users.update(user_id, **values)
        if values.get("disabled") or "password_hash" in values:
            self.refresh_tokens.revoke_user(user_id)
        for change in sorted(set(changes) - {"password"}):
            self.events.emit(ADMIN_USER_CHANGED, {"user_id": user_id, "change": change})
        return user

    def delete_user(self, user_id: str) -> None:
        self.users.delete(user_id)
        self.refresh_tokens.revoke_user(user_id)
        self.events.emit(ADMIN_USER_CHANGED, {"user_id": user_id, "change": "deleted"})
