"""Who may read /metrics: a scrape token, an admin, or (when configured so) anyone.

The metrics name every plugin, route outcome and latency, so they are not
for anyone who can reach the port. Two credentials open them, each a
``Authorization: Bearer ...`` header:

- the scrape token: the value of the environment variable named by
  ``server.metrics_token_env`` (``ARCANA_METRICS_TOKEN`` by default), at least
  32 bytes; unset means no scrape token. Prometheus sends it with
  ``authorization: {type: Bearer, credentials_file: /path/to/token}`` (or the
  older ``bearer_token_file``) in the scrape config;
- an access token (JWT) of a user with the admin role.

``server.metrics_public: true`` drops the check, for a port only a trusted
network can reach.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Mapping

from arcana.config import ServerConfig
from arcana.core import require_role
from arcana.errors import ConfigError
from arcana.types import Principal

MIN_TOKEN_BYTES = 32


def metrics_token(server: ServerConfig, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The scrape token from the environment, None when unset; ConfigError when too short to be a secret."""
    env = os.environ if environ is None else environ
    token = env.get(server.metrics_token_env, "")
    if not token:
        return None
    if len(token.encode()) < MIN_TOKEN_BYTES:
        raise ConfigError(
            f"server: the metrics token in ${server.metrics_token_env} is shorter than {MIN_TOKEN_BYTES} bytes; "
            "set a longer one (e.g. `openssl rand -hex 32`) or unset it"
        )
    return token.encode()


def check_metrics_token(server: ServerConfig) -> None:
    """Made before binding, so a weak token stops start-up with its one-line reason (exit code of a config error)."""
    metrics_token(server)


class MetricsAccess:
    def __init__(
        self,
        server: ServerConfig,
        authenticate: Callable[[str], Principal | None],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._public = server.metrics_public
        self._token = metrics_token(server, environ)
        self._authenticate = authenticate

    def check(self, authorization: str) -> None:
        """Return when the caller may read the metrics; else raise Unauthorized (401) or Forbidden (403)."""
        if self._public:
            return
        scheme, _, credential = authorization.partition(" ")
        if (
            self._token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(credential.strip().encode(), self._token)
        ):
            return
        require_role(self._authenticate(authorization), ("admin",))
