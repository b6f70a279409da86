"""A real Prometheus server (Debian's ``prometheus`` package) scrapes a real Arcana server's /metrics.

It authenticates as an operator would, with the scrape token in a file
(``authorization: {type: Bearer, credentials_file: ...}``), and the test
reads back through Prometheus's own query API: the target is up, and the
REST requests made before are there under their route template.

Without the ``prometheus`` binary the test is skipped, loudly; under CI=true
that is a failure (``.ci/run`` installs the package).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import ROOT
from e2e.server import ArcanaServer, free_port
from fakes import wait_for

TOKEN_ENV = "TEST_PROMETHEUS_SCRAPE_TOKEN"  # not ARCANA_*: the test server drops those from its environment
TOKEN = "prometheus-scrape-token-0123456789-abcdefghijklmnop"
INSTALL = "apt-get install prometheus"


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        reason = f"!!! Prometheus test NOT RUN: no `prometheus` binary on PATH. Install Debian's package ({INSTALL})."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this is a failure)", pytrace=False)
        pytest.skip(reason)
    return found


class Prometheus:
    """A prometheus process on a free port with its own storage, scraping ``target`` every second."""

    def __init__(self, binary: str, workdir: Path, target: str, token_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "arcana",
                    "metrics_path": "/metrics",
                    "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        config_file = workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query; empty while Prometheus is starting."""
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=2)
        except httpx.TransportError:
            return []
        if answer.status_code != 200:
            return []
        result: list[dict[str, Any]] = answer.json()["data"]["result"]
        return result

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Callable[[str, Path], Prometheus]]:
    binary = prometheus_binary()
    started: list[Prometheus] = []

    def start(target: str, token_file: Path) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        started.append(Prometheus(binary, workdir, target, token_file))
        return started[-1]

    yield start
    for prometheus in started:
        prometheus.stop()


def test_a_real_prometheus_scrapes_arcana_with_the_scrape_token(
    tmp_path: Path,
    start_server: Callable[..., ArcanaServer],
    prometheus_for: Callable[[str, Path], Prometheus],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", plugins / "hello.wasm")
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    server = start_server(plugins, {"server": {"metrics_token_env": TOKEN_ENV}})
    for name in ("Ada", "Grace", "Linus"):
        assert httpx.get(f"{server.url}/api/v1/hello/{name}").status_code == 200
    token_file = tmp_path / "scrape-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)

    prometheus = prometheus_for(f"127.0.0.1:{server.port}", token_file)
    up: list[dict[str, Any]] = []

    def scraped_up() -> bool:
        up[:] = prometheus.query('up{job="arcana"}')
        return bool(up) and up[0]["value"][1] == "1"

    wait_for(scraped_up, 60, f"prometheus never saw the target up ({up}):\n{prometheus.logs()}")
    hello = 'arcana_http_requests_total{route="/api/v1/hello/{name}",plugin="hello",status="200",method="GET"}'
    found: list[dict[str, Any]] = []

    def scraped_hello() -> bool:
        found[:] = prometheus.query(hello)
        return bool(found)

    wait_for(scraped_hello, 30, f"no {hello} in prometheus:\n{prometheus.logs()}")
    assert float(found[0]["value"][1]) == 3
    assert prometheus.query('arcana_http_requests_total{route="/api/v1/hello/Ada"}') == []
    assert prometheus.query('arcana_plugin_calls_total{plugin="hello",outcome="ok"}')
