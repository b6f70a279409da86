"""Access tokens: short-lived JWTs (PyJWT), HS256 by default, RS256/EdDSA with kid rotation.

Verification pins the configured algorithm family, so `alg: none` and
algorithm confusion (an HS256 token signed with a public key) are refused;
`exp`, `iat`, `iss`, `aud`, `sub` and `jti` are required. Tokens issued at
login and refresh also carry ``arcana_epoch``, the subject's revocation epoch
(see ``arcana.auth.revocation``).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from arcana.config import AuthConfig
from arcana.errors import ConfigError, TokenExpired, Unauthorized
from arcana.types import Principal

logger = logging.getLogger("arcana.auth")
MIN_SECRET_BYTES = 32
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]
EPOCH_CLAIM = "arcana_epoch"


def _is_text(value: object) -> bool:
    """Whether ``value`` is a string of Unicode text.

    JSON's escapes let a claim hold a lone surrogate ("\\ud800"); PyJWT's parser
    keeps it, and the database (the revocation lookup) and plugins (the
    envelope) refuse it. The kernel's own JSON parser refuses it too.
    """
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class Tokens:
    def __init__(self, config: AuthConfig, environ: dict[str, str] | None = None) -> None:
        self._config = config
        self._algorithm = config.algorithm
        env = os.environ if environ is None else environ
        if config.algorithm == "HS256":
            self._signing, self._verifying = self._hs_secret(config, env)
        else:
            self._signing, self._verifying = self._key_pairs(config)

    @staticmethod
    def _hs_secret(config: AuthConfig, env: Any) -> tuple[Any, dict[str, Any]]:
        secret = env.get(config.secret_env, "")
        if len(secret.encode()) < MIN_SECRET_BYTES:
            if not config.dev:
                raise ConfigError(
                    f"auth: the HS256 secret in ${config.secret_env} is missing or shorter than "
                    f"{MIN_SECRET_BYTES} bytes; set it, or use RS256/EdDSA keys"
                )
            logger.warning(
                "auth: no strong secret in $%s; dev mode uses an ephemeral one (tokens will not survive a restart)",
                config.secret_env,
            )
            secret = secrets.token_urlsafe(48)
        return secret, {"": secret}

    @staticmethod
    def _key_pairs(config: AuthConfig) -> tuple[Any, dict[str, Any]]:
        verifying: dict[str, Any] = {}
        signing = None
        for key in config.keys:
            try:
                verifying[key.kid] = serialization.load_pem_public_key(Path(key.public_key_file).read_bytes())
                if key.kid == config.active_kid:
                    signing = serialization.load_pem_private_key(Path(key.private_key_file).read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"auth.keys[{key.kid}]: cannot load key: {exc}") from exc
        if signing is None:
            raise ConfigError(f"auth.active_kid '{config.active_kid}' has no private_key_file")
        return signing, verifying

    def issue(
        self, sub: str, roles: list[str] | tuple[str, ...], ttl_s: int | None = None, epoch: int | None = None
    ) -> tuple[str, int]:
        """A signed access token and its lifetime; ``epoch`` is the subject's revocation epoch, when known."""
        now = int(time.time())
        ttl = ttl_s or self._config.access_ttl_s
        claims: dict[str, Any] = {
            "sub": sub,
            "roles": list(roles),
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "iss": self._config.issuer,
            "aud": self._config.audience,
        }
        if epoch is not None:
            claims[EPOCH_CLAIM] = epoch
        headers = {"kid": self._config.active_kid} if self._config.active_kid else None
        return jwt.encode(claims, self._signing, algorithm=self._algorithm, headers=headers), ttl

    def verify(self, token: str) -> Principal:
        return self.verify_with_epoch(token)[0]

    def verify_with_epoch(self, token: str) -> tuple[Principal, int | None]:
        """The principal, and the token's revocation epoch (None when it carries none)."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._verifying.get(header.get("kid", "") if self._config.active_kid else "")
            if key is None:
                raise Unauthorized("unknown signing key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[self._algorithm],
                audience=self._config.audience,
                issuer=self._config.issuer,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("the access token has expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("the access token is invalid") from None
        roles = claims.get("roles", [])
        if not _is_text(claims["sub"]) or not isinstance(roles, list) or not all(_is_text(r) for r in roles):
            raise Unauthorized("the access token is invalid")
        epoch = claims.get(EPOCH_CLAIM)
        if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0):
            raise Unauthorized("the access token is invalid")
        return Principal(claims["sub"], tuple(roles), str(claims["jti"]), int(claims["iat"])), epoch
