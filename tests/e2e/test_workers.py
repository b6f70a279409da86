"""Worker processes end to end: real `arcana serve --role worker` processes sharing one SQLite queue.

The jobber plugin (tests/fixtures/plugins/jobber) is built from source; the
test process enqueues and inspects jobs through the same backend class on
the same database file.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.queue.types import JobSpec, JobState, QueueBackend
from conftest import install
from e2e.server import ArcanaServer

pytestmark = pytest.mark.e2e
# A killed worker's job is handed out again this long after its last lease extension.
LEASE_S = 2


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[tuple[str, QueueBackend]]:
    """A migrated SQLite file and a backend on it, for the test's side of the queue."""
    sql_backend = pytest.importorskip("arcana.queue.sql_backend", reason="the SQL queue backend is not in this tree")
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    database = Database(DatabaseConfig(url=url))
    assert database.prepare() is None
    backend = sql_backend.SqlQueueBackend(database.engine)
    yield url, backend
    backend.close()
    database.close()


@pytest.fixture
def start_worker(
    tmp_path: Path, fixture_wasm: dict[str, Path], queue: tuple[str, QueueBackend]
) -> Iterator[Callable[[], ArcanaServer]]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install(fixture_wasm["jobber"], plugins)
    # Bigger claims than the default 8: fewer write transactions on the one SQLite file.
    queue_config = {"lease_s": LEASE_S, "poll_interval_ms": 20, "worker_concurrency": 32}
    config = {"database": {"url": queue[0]}, "queue": queue_config}
    servers: list[ArcanaServer] = []

    def start() -> ArcanaServer:
        server = ArcanaServer(plugins, tmp_path, config, role="worker")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def wait_until(predicate: Callable[[], object], timeout: float, message: str, *servers: ArcanaServer) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            logs = "\n".join(s.logs()[-3000:] for s in servers)
            raise AssertionError(f"timed out after {timeout} s: {message}\n{logs}")
        time.sleep(0.02)


def stopped_outcomes(server: ArcanaServer) -> dict[str, int]:
    """The outcome counts a worker logs when it stops."""
    for line in server.logs().splitlines():
        if line.startswith("{") and json.loads(line).get("message") == "worker stopped":
            outcomes: dict[str, int] = json.loads(line)["outcomes"]
            return outcomes
    raise AssertionError(f"no 'worker stopped' line:\n{server.logs()[-3000:]}")


def test_a_job_whose_worker_is_killed_midway_is_finished_by_another_worker(
    start_worker: Callable[[], ArcanaServer], queue: tuple[str, QueueBackend]
) -> None:
    backend = queue[1]
    first = start_worker()
    with pytest.raises(httpx.ConnectError):  # the worker role serves no port
        httpx.get(f"{first.url}/ready", timeout=2)
    job_id = backend.enqueue(JobSpec("jobber.sleepy", {"ms": 1500}), time.time()).id
    state = lambda: backend.get(job_id).state  # noqa: E731
    wait_until(lambda: state() == JobState.RUNNING, 15, "the first worker took the job", first)
    first.kill()
    second = start_worker()
    wait_until(lambda: state() == JobState.SUCCEEDED, 30, "the second worker finished the job", second)
    job: Any = backend.get(job_id)
    assert job.attempts == 2  # the killed attempt stays counted


def test_two_workers_run_ten_thousand_jobs_each_exactly_once(
    start_worker: Callable[[], ArcanaServer], queue: tuple[str, QueueBackend]
) -> None:
    backend = queue[1]
    workers = [start_worker(), start_worker()]
    ids = [
        enqueued.id
        for _ in range(10)
        for enqueued in backend.enqueue_many([JobSpec("jobber.noop") for _ in range(1000)], time.time())
    ]
    assert len(set(ids)) == 10_000
    wait_until(lambda: backend.stats(time.time()).succeeded == 10_000, 60, "10,000 jobs succeeded", *workers)
    for worker in workers:
        assert worker.stop() == 0
    stats = backend.stats(time.time())
    assert (stats.running, stats.dead, stats.delayed, sum(stats.ready.values())) == (0, 0, 0, 0)
    with ThreadPoolExecutor(8) as pool:
        attempts = Counter(job.attempts if job else None for job in pool.map(backend.get, ids))
    assert attempts == {1: 10_000}
    counts = [stopped_outcomes(w) for w in workers]
    assert all(c.get("succeeded", 0) > 0 for c in counts), counts  # both shared the work
    assert sum(c.get("succeeded", 0) for c in counts) == 10_000
    assert all(set(c) == {"succeeded"} for c in counts), counts
