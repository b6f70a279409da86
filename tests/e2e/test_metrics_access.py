"""/metrics on a real server: a scrape token or an admin token; open only when configured so.

Before: anyone who could reach the port read every plugin's name, call
counts and latencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from arcana.exit_codes import ExitCode
from e2e.server import ArcanaServer, admin_headers, free_port, mint

TOKEN_ENV = "TEST_METRICS_TOKEN"  # not ARCANA_*: the test server drops those from its environment
TOKEN = "scrape-token-0123456789-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_metrics_need_the_scrape_token_or_an_admin(
    plugins: Path, start_server: Callable[..., ArcanaServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server = start_server(plugins, {"server": {"metrics_token_env": TOKEN_ENV}})
    url = f"{server.url}/metrics"
    anonymous = httpx.get(url)
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHORIZED"
    assert anonymous.headers["www-authenticate"] == "Bearer" and "python_info" not in anonymous.text
    assert httpx.get(url, headers=bearer(TOKEN[:-1] + "!")).status_code == 401
    assert httpx.get(url, headers=bearer(mint("u-plain", ["reader"]))).status_code == 403
    for headers in (bearer(TOKEN), admin_headers()):
        r = httpx.get(url, headers=headers)
        assert r.status_code == 200 and "python_info" in r.text


def test_without_a_scrape_token_only_an_admin_reads_metrics(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins)
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers=admin_headers()).status_code == 200


def test_metrics_public_opens_them_to_anyone(plugins: Path, start_server: Callable[..., ArcanaServer]) -> None:
    server = start_server(plugins, {"server": {"metrics_public": True}})
    r = httpx.get(f"{server.url}/metrics")
    assert r.status_code == 200 and "python_info" in r.text


def test_a_short_scrape_token_stops_start_up_in_one_line(tmp_path: Path, plugins: Path) -> None:
    config = tmp_path / "arcana.yaml"
    settings = {"server": {"metrics_token_env": TOKEN_ENV}, "database": {"url": f"sqlite:///{tmp_path / 'a.db'}"}}
    config.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")} | {TOKEN_ENV: "short-token"}
    argv = ["serve", "--config", str(config), "--plugins", str(plugins), "--http-port", str(free_port())]
    done = subprocess.run(
        [sys.executable, "-m", "arcana.cli", *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == ExitCode.CONFIG and done.stderr.count("\n") == 1
    assert f"${TOKEN_ENV} is shorter than 32 bytes" in done.stderr and "short-token" not in done.stderr
