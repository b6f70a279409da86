"""The HTTP layer's configuration: bounds, trusted proxies, the open-file check."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from arcana.config import ServerConfig, load_config
from arcana.edge.http_protocol import BoundedHttpToolsProtocol, HttpLimits
from arcana.errors import ConfigError
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.server import RESERVED_FILES, check_open_files, http_options


def test_trusted_proxies_take_addresses_and_networks_from_file_or_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  trusted_proxies: [10.0.0.1, 10.1.0.0/16, '::1', 'fd00::/8']\n")
    assert load_config(path, environ={}).server.trusted_proxies == ["10.0.0.1", "10.1.0.0/16", "::1", "fd00::/8"]
    from_env = load_config(None, environ={"ARCANA_SERVER__TRUSTED_PROXIES": "[192.0.2.1]"})
    assert from_env.server.trusted_proxies == ["192.0.2.1"]


@pytest.mark.parametrize("entry", ["*", "localhost", "10.0.0.1/33", ""])
def test_a_trusted_proxy_that_is_no_address_stops_start_up(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"'server.trusted_proxies' must list IP addresses or CIDR networks"):
        ServerConfig(trusted_proxies=[entry])


@pytest.mark.parametrize(
    "key, value, floor",
    [("max_header_bytes", 1023, "1024"), ("max_url_bytes", 255, "256"), ("max_header_count", 7, "8")],
)
def test_bounds_below_their_floor_stop_start_up(key: str, value: int, floor: str) -> None:
    with pytest.raises(ConfigError, match=rf"'server.{key}' must be at least {floor}, got {value}"):
        ServerConfig(**{key: value})


@pytest.mark.parametrize("key", ["header_timeout_s", "body_timeout_s"])
@pytest.mark.parametrize("value", [0.0, -1.0, 3601.0])
def test_the_timeouts_must_be_positive_and_at_most_an_hour(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=rf"'server.{key}' must be in \(0, 3600\]"):
        ServerConfig(**{key: value})


def test_zero_max_connections_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"'server.max_connections' must be at least 1"):
        ServerConfig(max_connections=0)


def test_uvicorn_gets_the_bounded_protocol_and_no_proxy_trust_by_default() -> None:
    options = http_options(ServerConfig(max_header_bytes=4096, keepalive_timeout_s=2))
    assert issubclass(options["http"], BoundedHttpToolsProtocol)
    assert options["http"].limits == HttpLimits(max_header_bytes=4096)
    assert options["ws"] == "none" and options["timeout_keep_alive"] == 2
    assert options["proxy_headers"] is False  # uvicorn's middleware (which trusts 127.0.0.1) is left out
    trusting = http_options(ServerConfig(trusted_proxies=["10.0.0.0/8"]))
    assert trusting["proxy_headers"] is True and trusting["forwarded_allow_ips"] == ["10.0.0.0/8"]


def test_the_proxy_middleware_believes_only_the_configured_proxies() -> None:
    """What uvicorn does with forwarded_allow_ips: the forwarded client from a trusted peer, else the peer."""

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append((scope["client"], scope["scheme"]))

    seen: list[tuple[object, object]] = []
    options = http_options(ServerConfig(trusted_proxies=["10.0.0.0/8"]))
    middleware = ProxyHeadersMiddleware(app, trusted_hosts=options["forwarded_allow_ips"])
    headers = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https")]
    for peer in ("10.2.3.4", "127.0.0.1"):
        scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
        asyncio.run(middleware(scope, None, None))
    assert seen == [(("198.51.100.7", 0), "https"), (("127.0.0.1", 5000), "http")]


def test_the_open_file_limit_is_raised_for_max_connections_when_the_hard_limit_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 65536))
    monkeypatch.setattr(resource, "setrlimit", lambda _, limits: calls.append(limits))
    check_open_files(ServerConfig(max_connections=500))
    assert calls == []
    check_open_files(ServerConfig(max_connections=2000))
    assert calls == [(2000 + RESERVED_FILES, 65536)]


def test_max_connections_over_the_hard_open_file_limit_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 1024))
    with pytest.raises(StartupFailure) as failure:
        check_open_files(ServerConfig(max_connections=1000))
    assert failure.value.code == ExitCode.CONFIG
    assert f"needs {1000 + RESERVED_FILES} open files" in str(failure.value) and "ulimit -n" in str(failure.value)
