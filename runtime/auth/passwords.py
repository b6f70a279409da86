"""Argon2id password hashing (argon2-cffi), with rehash when parameters change."""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from arcana.config import AuthConfig

MAX_PASSWORD_CHARS = 1024


class Passwords:
    def __init__(self, config: AuthConfig) -> None:
        self._hasher = PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_kib,
            parallelism=config.argon2_parallelism,
            type=Type.ID,
        )
        # Verified against when the account does not exist, so both paths cost one Argon2 run.
        self._decoy = self._hasher.hash("arcana-decoy-password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password[:MAX_PASSWORD_CHARS])

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._decoy, password[:MAX_PASSWORD_CHARS]) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
