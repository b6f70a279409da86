"""``capabilities.http`` in the operator's config: the bounds of ``http_fetch``.

    capabilities:
      http:
        max_response_bytes: 1048576   # a longer body is cut there and answered with truncated: true
        max_timeout_ms: 30000

The per-host circuit breaker and the retry policy are the kernel's
``resilience:`` section (``http_breaker``, ``max_http_breakers``, ``retry``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from arcana.errors import ConfigError


@dataclass(frozen=True)
class HttpConfig:
    # Response body bytes kept; the rest is not read (the reply says truncated: true).
    max_response_bytes: int = 1_048_576
    # Request body bytes a plugin may send (PAYLOAD_TOO_LARGE past it).
    max_request_bytes: int = 1_048_576
    # A fetch without timeout_ms gets this long, retries and redirects included; none may ask for more
    # than max_timeout_ms, and none outlives the plugin call's own deadline.
    default_timeout_ms: int = 10_000
    max_timeout_ms: int = 30_000
    # Redirects followed per fetch (each to a granted host that passes the address check); 0: none.
    max_redirects: int = 5
    # The request's headers, and the response's, as name + value bytes.
    max_header_bytes: int = 32_768
    # http_fetch calls one plugin call may make (RATE_LIMITED past it).
    max_fetches_per_call: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            floor = 0 if f.name == "max_redirects" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < floor:
                raise ConfigError(f"config key 'capabilities.http.{f.name}' must be an integer >= {floor}, got {value}")
        if self.default_timeout_ms > self.max_timeout_ms:
            raise ConfigError(
                f"config key 'capabilities.http.default_timeout_ms' ({self.default_timeout_ms}) "
                f"must not exceed max_timeout_ms ({self.max_timeout_ms})"
            )
        if self.max_redirects > 20:
            raise ConfigError(
                f"config key 'capabilities.http.max_redirects' must be at most 20, got {self.max_redirects}"
            )
