"""Argon2id password hashing (argon2-cffi), with rehash when parameters change."""

from __future__ import annotations

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from arcana.config import AuthConfig

MAX_PASSWORD_CHARS = 1024


# How much dearer than the kernel's own parameters a hash it is asked to verify may be.
HEADROOM = 4


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

    def affordable(self, stored: str) -> bool:
        """Whether verifying ``stored`` costs at most HEADROOM times this kernel's own Argon2 parameters.

        A hash handed in by a plugin (``auth_verify_password``) may name any
        cost: one asking for a gibibyte of memory would let a plugin spend the
        host's memory and CPU. The headroom keeps hashes made before an
        operator lowered the parameters verifiable.
        """
        try:
            asked = extract_parameters(stored)
        except InvalidHashError:
            return True  # not an Argon2 hash: verify refuses it at no cost
        own = self._hasher
        return (
            asked.memory_cost <= own.memory_cost * HEADROOM
            and asked.time_cost <= own.time_cost * HEADROOM
            and asked.parallelism <= own.parallelism * HEADROOM
        )

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
