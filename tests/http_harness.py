"""Calling ``http_fetch`` as a plugin would, against ``http_upstream.Upstream``, with an injected resolver."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from arcana.config import ArcanaConfig, BreakerConfig, ResilienceConfig, RetryConfig
from arcana.manifest import Manifest
from arcana.resilience import BreakerBoard
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.http import HttpCapability


def config(http: Mapping[str, Any] | None = None, attempts: int = 1, threshold: int = 5) -> ArcanaConfig:
    """Retries with millisecond waits (so a test of them is quick), a breaker that opens at ``threshold``."""
    retry = RetryConfig(max_attempts=attempts, base_delay_ms=1, max_delay_ms=2, max_total_ms=5000)
    breaker = BreakerConfig(failure_threshold=threshold, cool_down_s=10.0)
    return ArcanaConfig(
        resilience=ResilienceConfig(retry=retry, http_breaker=breaker), capabilities={"http": dict(http or {})}
    )


class FakeResolver:
    """Names -> addresses, counting the questions; a name it does not know does not resolve."""

    def __init__(self, names: Mapping[str, Sequence[str]] | None = None) -> None:
        self.names = dict(names or {})
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(-2, "Name or service not known")
        return self.names[host]


class Fetcher:
    """One plugin with ``grant`` as its capabilities.http, fetching through the real JSON boundary."""

    def __init__(
        self,
        *grant: str,
        cfg: ArcanaConfig | None = None,
        resolver: Callable[[str, int], Sequence[str]] | None = None,
        breakers: BreakerBoard | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.resolver = resolver or FakeResolver()
        self.capability = HttpCapability(cfg or config(), breakers, resolver=self.resolver, tls=tls)
        spec = PluginSpec(Manifest("fetcher", "1.0.0", capabilities={"http": tuple(grant)}), frozenset({"http"}))
        self._fn = link_capability(self.capability, spec)["http_fetch"]

    def call(self, deadline_s: float = 0.0) -> CallContext:
        return CallContext("fetcher", "1.0.0", "r1", deadline=time.monotonic() + deadline_s if deadline_s else 0.0)

    def fetch(self, url: str = "", context: CallContext | None = None, **request: Any) -> dict[str, Any]:
        if url:
            request["url"] = url
        reply = self._fn.call(context or self.call(), json.dumps(request).encode())
        return json.loads(reply)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.capability.close()


def code(reply: Mapping[str, Any]) -> str | None:
    return reply.get("error", {}).get("code")  # type: ignore[no-any-return]


def message(reply: Mapping[str, Any]) -> str:
    return str(reply.get("error", {}).get("message", ""))
