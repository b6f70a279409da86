"""X-Forwarded-For is believed only from server.trusted_proxies (none by default), on a real server.

Before: uvicorn trusted 127.0.0.1 by default, so a local client (or an SSRF
through any local service) picked a fresh address per request and was never
stopped by the per-address login limit (20 failures per window).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from e2e.server import ArcanaServer

PER_ADDRESS = 20  # auth.login_failures_per_address, the default


def failed_logins(server: ArcanaServer, forwarded_for: Callable[[int], str], count: int = 25) -> list[int]:
    """Statuses of ``count`` wrong-password logins, each for another account (so only the address limit applies)."""
    statuses = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(count):
            r = client.post(
                "/api/v1/auth/login",
                json={"email": f"nobody{i}@example.com", "password": "not-the-password"},
                headers={"x-forwarded-for": forwarded_for(i)},
            )
            statuses.append(r.status_code)
    return statuses


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


def test_without_trusted_proxies_a_forged_forwarded_for_does_not_escape_the_address_limit(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins)
    statuses = failed_logins(server, lambda i: f"203.0.113.{i}")
    assert statuses[:PER_ADDRESS] == [401] * PER_ADDRESS
    assert statuses[PER_ADDRESS:] == [429] * (25 - PER_ADDRESS)


def test_from_a_trusted_proxy_the_forwarded_address_is_the_client(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins, {"server": {"trusted_proxies": ["127.0.0.0/8"]}})
    assert failed_logins(server, lambda i: f"203.0.113.{i}") == [401] * 25  # 25 clients, one failure each
    one_client = failed_logins(server, lambda i: "198.51.100.7, 127.0.0.1", count=PER_ADDRESS + 1)
    assert one_client == [401] * PER_ADDRESS + [429]  # the proxy's own hop is skipped: one client, limited
