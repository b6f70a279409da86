"""``http_fetch`` end to end: plugins built from source, a real server process, a real upstream server.

The plugins (tests/fixtures/plugins/httpprobe in Zig, ashttpprobe in
AssemblyScript, chttpprobe in C) are granted ``localhost`` by name and ``*.example.com``;
they fetch whatever URL they are asked to. The
upstream is an HTTP server in this test process that fails on command and
counts its requests, so the per-host breaker can be watched opening,
failing fast, half-opening after its cool-down and closing again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import install
from e2e.server import ArcanaServer
from http_upstream import Upstream

pytestmark = pytest.mark.toolchain
COOL_DOWN_S = 1.0
# SDK -> the route of its probe plugin.
PROBES = {"zig": "http", "as": "ashttp"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("http")
    folder = work / "plugins"
    folder.mkdir()
    for name in ("httpprobe", "ashttpprobe", "chttpprobe"):
        install(fixture_wasm[name], folder, name)
    config = {
        "grants": {"*": ["log"], "httpprobe": ["http"], "ashttpprobe": ["http"], "chttpprobe": ["http"]},
        "resilience": {
            "http_breaker": {"failure_threshold": 2, "cool_down_s": COOL_DOWN_S},
            "retry": {"max_attempts": 1},
        },
    }
    started = ArcanaServer(folder, work, config).start()
    yield started
    started.stop()


def fetch(server: ArcanaServer, url: str, sdk: str = "zig", **args: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/probe/{PROBES[sdk]}", json={"url": url, **args}, timeout=20)


@pytest.mark.parametrize("sdk", PROBES)
def test_a_host_granted_by_name_is_fetched(server: ArcanaServer, upstream: Upstream, sdk: str) -> None:
    answer = fetch(server, upstream.url("/ok", host="localhost"), sdk)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "status": 200,
        "body": "hello",
        "truncated": False,
        "url": upstream.url("/ok", host="localhost"),
        "content_type": "text/plain",
    }


@pytest.mark.parametrize("sdk", PROBES)
def test_a_post_body_reaches_the_upstream(server: ArcanaServer, upstream: Upstream, sdk: str) -> None:
    answer = fetch(server, upstream.url("/echo", host="localhost"), sdk, method="POST", body="hi", header=["x-a", "b"])
    assert answer.status_code == 200, answer.text
    assert '"body": "hi"' in answer.json()["body"] and '"x-a": "b"' in answer.json()["body"]


@pytest.mark.parametrize("sdk", PROBES)
def test_loopback_not_granted_by_name_is_forbidden(server: ArcanaServer, upstream: Upstream, sdk: str) -> None:
    before = upstream.hits["/ok"]
    answer = fetch(server, upstream.url("/ok"), sdk)
    assert answer.status_code == 403 and answer.json()["code"] == "FORBIDDEN"
    assert "may not fetch 127.0.0.1" in answer.json()["message"]
    assert upstream.hits["/ok"] == before


@pytest.mark.parametrize("sdk", PROBES)
def test_the_metadata_address_is_forbidden(server: ArcanaServer, sdk: str) -> None:
    answer = fetch(server, "http://169.254.169.254/latest/meta-data/", sdk)
    assert answer.status_code == 403 and answer.json()["code"] == "FORBIDDEN"
    assert "may not fetch 169.254.169.254" in answer.json()["message"]


def test_the_breaker_opens_fails_fast_half_opens_and_closes(server: ArcanaServer, upstream: Upstream) -> None:
    url = upstream.url("/flaky", host="localhost")
    upstream.failing = True
    assert [fetch(server, url).json()["status"] for _ in range(2)] == [503, 503]
    hits = upstream.hits["/flaky"]

    refused = fetch(server, url)
    assert refused.status_code == 503 and refused.json()["code"] == "SERVICE_UNAVAILABLE", refused.text
    assert "circuit open" in refused.json()["message"]
    assert upstream.hits["/flaky"] == hits  # failed fast: nothing reached the upstream

    upstream.failing = False
    deadline = time.monotonic() + 10 * COOL_DOWN_S
    while fetch(server, url).status_code == 503:  # open until the cool-down has passed, then a probe goes through
        assert time.monotonic() < deadline, "the breaker never let a probe through"
        time.sleep(COOL_DOWN_S / 4)
    assert upstream.hits["/flaky"] == hits + 1  # exactly one probe, and it closed the breaker
    logs = server.logs()  # the kernel's board logs each change and emits it as a kernel event
    assert "circuit breaker http localhost: closed -> open" in logs and "breaker.opened" in logs
    assert "circuit breaker http localhost: half_open -> closed" in logs and "breaker.closed" in logs
    assert fetch(server, url).json() == {
        "status": 200,
        "body": "up",
        "truncated": False,
        "url": url,
        "content_type": None,
    }


def test_the_c_helper_fetches_a_granted_host_and_is_refused_the_rest(server: ArcanaServer, upstream: Upstream) -> None:
    def fetch_c(url: str) -> dict[str, Any]:
        answer = httpx.post(f"{server.url}/probe/chttp", content=url.encode(), timeout=20)
        assert answer.status_code == 200, answer.text
        return answer.json()  # type: ignore[no-any-return]

    reply = fetch_c(upstream.url("/echo", host="localhost"))
    assert reply["status"] == 200 and '"x-probe": "c"' in reply["body"]
    for refused in (upstream.url("/ok"), "http://169.254.169.254/latest/meta-data/"):
        assert fetch_c(refused)["error"]["code"] == "FORBIDDEN"
