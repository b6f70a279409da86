"""/ready follows the database, and every 503 the kernel answers carries Retry-After.

"Database down" is reproduced three ways, each what an operator could meet:
a PostgreSQL URL where nothing listens (connection refused from the start;
the kernel still starts: PostgreSQL is only checked, never required, at
start-up), PostgreSQL behind a TCP forwarder that the test cuts and restores
(the database's network failing under a serving kernel), and a SQLite file
replaced by a directory under a serving kernel (a lost mount or a botched
restore: a fresh connection can no longer open it).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import ROOT, install
from e2e.server import ArcanaServer, free_port, mint

ALICE = {"authorization": f"Bearer {mint('alice', ['user'], ttl=3600)}"}
LOGIN = {"email": "nobody@example.com", "password": "not-the-password"}
# The loop plugin under a sidecar: one call at a time, each running into its 1 s limit.
ONE_AT_A_TIME = """[plugin]
name = "oneatatime"
version = "1.0.0"
[limits]
timeout_ms = 1000
max_concurrency = 1
[[route]]
method = "GET"
path = "/api/v1/test/oneatatime"
handler = "loop"
public = true
"""


def _unavailable(r: httpx.Response) -> None:
    """A 503 in the error model, with a Retry-After of whole seconds."""
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "SERVICE_UNAVAILABLE"
    assert int(r.headers["retry-after"]) >= 1


def _until(what: Callable[[], bool], server: ArcanaServer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.05)


def _answering(server: ArcanaServer) -> None:
    """Wait until the server answers /health (its /ready may well be 503)."""

    def up() -> bool:
        try:
            return httpx.get(f"{server.url}/health").status_code == 200
        except httpx.TransportError:
            assert server.proc is not None and server.proc.poll() is None, server.logs()[-3000:]
            return False

    _until(up, server)


def _notes_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "notes" / "notes.wasm", folder / "notes.wasm")
    return folder


def _no_traceback(server: ArcanaServer) -> None:
    assert "Traceback" not in server.logs(), server.logs()[-3000:]


class Forwarder:
    """A TCP forwarder on loopback that the test can cut and restore: the database's network."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and reset the open ones."""
        if self._listener is not None:
            # shutdown first: close() alone leaves a blocked accept() able to take one more connection.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed by down()
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def forwarded_postgres(fresh_postgres_url: str, tmp_path: Path) -> Iterator[tuple[Forwarder, dict[str, Any]]]:
    """A migrated PostgreSQL schema, reached by the server only through a Forwarder."""
    migrate = tmp_path / "migrate.yaml"
    migrate.write_text(yaml.safe_dump({"database": {"url": fresh_postgres_url}}))
    done = subprocess.run(
        [sys.executable, "-m", "arcana.cli", "migrate", "--config", str(migrate)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    forwarder = Forwarder(5432)
    forwarder.up()
    url = fresh_postgres_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{forwarder.port}/")
    yield forwarder, {"database": {"url": url}, "grants": {"*": ["log"], "notes": ["store", "events"]}}
    forwarder.down()


@pytest.mark.postgres
def test_ready_follows_postgresql_going_away_and_coming_back(
    forwarded_postgres: tuple[Forwarder, dict[str, Any]], tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    forwarder, config = forwarded_postgres
    server = start_server(_notes_folder(tmp_path), config)
    assert httpx.get(f"{server.url}/ready").json()["status"] == "ready"
    assert httpx.get(f"{server.url}/api/v1/notes", headers=ALICE).status_code == 200

    # A database that cannot be reached at start-up stops `arcana serve` (exit 4, tests/e2e/test_cli.py);
    # one that goes away later turns /ready, the kernel's routes and the store into 503s with Retry-After.
    forwarder.down()
    _until(lambda: httpx.get(f"{server.url}/ready").status_code == 503, server)
    _unavailable(httpx.get(f"{server.url}/ready"))
    assert httpx.get(f"{server.url}/ready").json()["message"] == "the database is unavailable"
    _unavailable(httpx.post(f"{server.url}/api/v1/auth/login", json=LOGIN))
    _unavailable(httpx.get(f"{server.url}/api/v1/notes", headers=ALICE))
    assert httpx.get(f"{server.url}/health").status_code == 200

    forwarder.up()
    _until(lambda: httpx.get(f"{server.url}/ready").status_code == 200, server)
    assert httpx.post(f"{server.url}/api/v1/auth/login", json=LOGIN).json()["code"] == "INVALID_CREDENTIALS"
    assert httpx.get(f"{server.url}/api/v1/notes", headers=ALICE).status_code == 200
    _no_traceback(server)


def test_ready_notices_a_sqlite_file_replaced_by_a_directory(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    db = tmp_path / "kernel.db"
    folder = tmp_path / "plugins"
    folder.mkdir()
    server = start_server(folder, {"database": {"url": f"sqlite:///{db}"}})
    moved = tmp_path / "kernel.db.away"
    db.rename(moved)
    db.mkdir()
    _until(lambda: httpx.get(f"{server.url}/ready").status_code == 503, server)
    _unavailable(httpx.get(f"{server.url}/ready"))
    assert httpx.get(f"{server.url}/health").status_code == 200
    db.rmdir()
    moved.rename(db)
    _until(lambda: httpx.get(f"{server.url}/ready").status_code == 200, server)
    _no_traceback(server)


def test_a_plugin_at_its_concurrency_limit_answers_503_with_retry_after(
    tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "oneatatime.toml").write_text(ONE_AT_A_TIME)
    install(fixture_wasm["loop"], folder, "oneatatime")
    server = start_server(folder)
    url = f"{server.url}/api/v1/test/oneatatime"
    # Four calls at once on one slot: each holds it for its whole 1 s limit, and
    # a queued call waits at most that long, so at least two cannot get in.
    answers: list[httpx.Response] = []
    start = threading.Barrier(4)

    def call() -> None:
        start.wait()
        answers.append(httpx.get(url, timeout=30))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in answers)
    assert 503 in statuses and set(statuses) <= {503, 504}, statuses
    for r in answers:
        if r.status_code == 503:
            _unavailable(r)
            # Either bulkhead may refuse first: its slot (max_concurrency 1) or, on a slow machine where the
            # timed-out calls' threads are still being reclaimed, its share of threads.
            message = r.json()["message"]
            assert "concurrency limit" in message or "share of threads" in message, message
    _no_traceback(server)
