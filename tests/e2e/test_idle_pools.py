"""Idle pools shrink on a real server: after a burst, the kernel's sweep drops the instances nobody uses."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from conftest import ROOT
from e2e.server import ArcanaServer
from fakes import wait_for

IDLE = re.compile(r'^arcana_plugin_instances_idle\{plugin="hello"\} (\S+)$', re.M)
# hello's manifest: max_concurrency 8, so a burst of more callers holds up to 8 instances at once.
CALLERS = 16


def idle_instances(server: ArcanaServer) -> float:
    found = IDLE.search(httpx.get(f"{server.url}/metrics").text)
    assert found is not None, "no idle gauge for hello on /metrics"
    return float(found.group(1))


def test_after_a_burst_the_idle_pool_shrinks_to_its_minimum_and_still_serves(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", plugins / "hello.wasm")
    config = {
        "server": {"metrics_public": True},
        "executor": {"idle_instance_ttl_s": 1.0, "min_idle_instances": 1},
    }
    server = start_server(plugins, config)
    url = f"{server.url}/api/v1/hello/ada"
    with httpx.Client() as client:
        assert client.get(url).status_code == 200

    def calls(_: int) -> list[int]:
        with httpx.Client() as client:  # a connection each: the calls overlap
            return [client.get(url).status_code for _ in range(40)]

    with ThreadPoolExecutor(CALLERS) as pool:
        statuses = [s for batch in pool.map(calls, range(CALLERS)) for s in batch]
    assert set(statuses) == {200}
    peak = idle_instances(server)
    assert peak > 1, "the burst never overlapped its calls: nothing to shrink"
    # Nobody calls now: the sweep (every second with this ttl) drops what idled past it, keeping one.
    wait_for(lambda: idle_instances(server) == 1, 15, "the idle pool never shrank to one instance")
    assert httpx.get(url).status_code == 200
    assert idle_instances(server) == 1
