"""`arcana serve --workers N`: several processes on one REST and one gRPC port, supervised by the parent.

Every REST answer of such a process carries ``X-Arcana-Worker: <pid>``; the
tests tell the processes apart by it. Each request below opens a fresh
connection, so the kernel's SO_REUSEPORT hashing spreads them over the
processes. No timed assertion: every wait polls with a generous deadline.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from conftest import ROOT, build_variant, install
from e2e.server import ArcanaServer, admin_headers, free_port
from metrics_text import samples, value

pytestmark = pytest.mark.e2e
VERSION_URL = "/api/v1/test/version"
HEADER = "x-arcana-worker"
DEADLINE_S = 60.0
# greeter.v1.HelloRequest{name: "Ada"} and the HelloReply the hello plugin answers, as protobuf bytes.
HELLO_REQUEST = b"\x0a\x03Ada"
HELLO_REPLY = b"\x0a\x0bHello, Ada!"


def _free_port_pair() -> int:
    """A port P with P + 1 free as well (metrics_port + worker index)."""
    for _ in range(100):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two adjacent free ports")


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("variants")
    v2 = build_variant("versioned", work, {'const VERSION = "v1";': 'const VERSION = "v2";'})
    return {"v1": fixture_wasm["versioned"], "v2": v2}


def _start(work: Path, versions: dict[str, Path], config: dict | None = None) -> ArcanaServer:
    folder = work / "plugins"
    folder.mkdir()
    install(versions["v1"], folder, "versioned")
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    return ArcanaServer(folder, work, config, extra_args=["--workers", "2"]).start()


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return _free_port_pair()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, versions: dict[str, Path], metrics_port: int
) -> Iterator[ArcanaServer]:
    server = _start(tmp_path_factory.mktemp("workers"), versions, {"server": {"metrics_port": metrics_port}})
    yield server
    server.stop()


def _answers_by_pid(
    server: ArcanaServer, path: str, done: Callable[[dict[str, str]], bool], what: str, after_kill: bool = False
) -> dict[str, str]:
    """GET ``path`` on fresh connections until ``done(last body by pid)``; fail with the logs after the deadline.

    ``after_kill``: a connection the killed process had accepted, or queued, is reset; try again.
    """
    seen: dict[str, str] = {}
    deadline = time.monotonic() + DEADLINE_S
    while not done(seen):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: saw {seen} after {DEADLINE_S} s\n{server.logs()[-3000:]}")
        try:
            answer = httpx.get(server.url + path)  # a new connection each time
        except httpx.TransportError:
            if not after_kill:
                raise
            continue
        assert answer.status_code == 200, answer.text
        seen[answer.headers[HEADER]] = answer.text
    return seen


def _arcana_serve(cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`arcana serve ARGS` run to its end (these runs fail at start-up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    command = [sys.executable, "-m", "arcana.cli", "serve", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=60, check=False)


def _two_pids(seen: dict[str, str]) -> bool:
    return len(seen) >= 2


def test_two_workers_answer_from_two_processes_on_one_port(served: ArcanaServer) -> None:
    seen = _answers_by_pid(served, "/api/v1/hello/Ada", _two_pids, "answers from two processes")
    assert len(seen) == 2
    assert all(body == '{"message":"Hello, Ada!"}' for body in seen.values())
    assert served.proc is not None and str(served.proc.pid) not in seen, "the parent serves nothing itself"


def test_both_workers_pick_up_a_changed_plugin(served: ArcanaServer, versions: dict[str, Path]) -> None:
    before = _answers_by_pid(served, VERSION_URL, _two_pids, "both processes serve v1")
    assert all('"v1"' in body for body in before.values())
    install(versions["v2"], served.plugins, "versioned")

    def both_on_v2(seen: dict[str, str]) -> bool:
        return len(seen) == 2 and all('"v2"' in body for body in seen.values())

    after = _answers_by_pid(served, VERSION_URL, both_on_v2, "both processes serve v2")
    assert set(after) == set(before)
    install(versions["v1"], served.plugins, "versioned")  # as found, for the tests after this one
    _answers_by_pid(served, VERSION_URL, lambda s: len(s) == 2 and all('"v1"' in b for b in s.values()), "back on v1")


def test_grpc_is_served_on_the_shared_port(served: ArcanaServer) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        say = channel.unary_unary(
            "/greeter.v1.Greeter/SayHello", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        assert say(HELLO_REQUEST, timeout=30) == HELLO_REPLY


def test_each_worker_serves_its_own_metrics_on_metrics_port_plus_its_index(
    served: ArcanaServer, metrics_port: int
) -> None:
    def hello_total() -> float:
        total = 0.0
        for port in (metrics_port, metrics_port + 1):
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=admin_headers())
            assert answer.status_code == 200
            labels = {"method": "GET", "route": "/api/v1/hello/{name}", "status": "200", "plugin": "hello"}
            total += value(samples(answer.text), "arcana_http_requests_total", **labels)
        return total

    before = hello_total()
    seen = _answers_by_pid(served, "/api/v1/hello/Ada", _two_pids, "answers from two processes")
    assert hello_total() - before >= len(seen)
    requests = 20
    before = hello_total()
    for _ in range(requests):
        assert httpx.get(served.url + "/api/v1/hello/Ada").status_code == 200
    assert hello_total() - before == requests, "the two scrape targets together count every request once"


def test_a_second_server_on_the_ports_of_running_workers_is_refused(served: ArcanaServer, tmp_path: Path) -> None:
    other = tmp_path / "plugins"
    other.mkdir()
    for workers in ("1", "2"):
        ports = ["--http-port", str(served.port), "--grpc-port", str(free_port())]
        out = _arcana_serve(tmp_path, ["--plugins", str(other), *ports, "--workers", workers])
        assert out.returncode == 3, out.stderr
        assert f"cannot listen for HTTP on 127.0.0.1:{served.port}: the port is already in use" in out.stderr


def test_a_worker_that_dies_is_replaced_and_sigterm_stops_them_all(tmp_path: Path, versions: dict[str, Path]) -> None:
    server = _start(tmp_path, versions)
    try:
        first = set(_answers_by_pid(server, "/api/v1/hello/Ada", _two_pids, "answers from two processes"))
        victim = int(sorted(first)[0])
        os.kill(victim, signal.SIGKILL)

        def replaced(seen: dict[str, str]) -> bool:
            return len(seen.keys() - first) >= 1 and len(seen.keys() - {str(victim)}) >= 2

        _answers_by_pid(server, "/api/v1/hello/Ada", replaced, "a new process in place of the killed one", True)
        pids = [int(pid) for pid in _answers_by_pid(server, "/api/v1/hello/Ada", replaced, "")]
        assert victim not in pids
    finally:
        code = server.stop()
    assert code == 0, server.logs()[-3000:]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.parametrize(
    "args, config, message",
    [
        (["--workers", "0"], "", "argument --workers: must be 1-64"),
        (["--workers", "65"], "", "argument --workers: must be 1-64"),
        (["--workers", "many"], "", "argument --workers: must be a whole number 1-64 or 'auto'"),
        ([], "server:\n  workers: 100\n", "config key 'server.workers' must be 1-64, got 100"),
        (["--workers", "2", "--http-port", "0"], "", "--workers 2 needs a fixed HTTP port, not 0"),
    ],
)
def test_a_worker_count_out_of_bounds_or_an_unshared_port_is_a_configuration_error(
    tmp_path: Path, args: list[str], config: str, message: str
) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "arcana.yaml").write_text(config or "{}\n")
    out = _arcana_serve(tmp_path, ["--plugins", str(tmp_path / "plugins"), *args])
    assert out.returncode == 2, out.stderr
    assert message in out.stderr


def test_one_process_serves_as_before_without_the_worker_header(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    server = ArcanaServer(folder, tmp_path).start()
    try:
        answer = httpx.get(server.url + "/api/v1/hello/Ada")
        assert answer.status_code == 200 and HEADER not in answer.headers
        assert "arcana process started" not in server.logs(), "no supervisor in between"
    finally:
        assert server.stop() == 0
