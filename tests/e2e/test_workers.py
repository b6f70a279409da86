"""Worker processes end to end: real `arcana serve --role worker` processes sharing one queue.

Each test runs on the SQL backend (one SQLite file) and on Redis (a key
prefix of its own). The jobber plugin (tests/fixtures/plugins/jobber) is
built from source; the test process enqueues and inspects jobs through the
same backend class on the same store.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from arcana.config import DatabaseConfig, QueueConfig
from arcana.database import Database
from arcana.errors import ServiceUnavailable
from arcana.queue.types import JobSpec, JobState, QueueBackend
from conftest import install
from e2e.server import ArcanaServer

pytestmark = pytest.mark.e2e
# A killed worker's job is handed out again this long after its last lease extension.
LEASE_S = 2
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class SharedQueue:
    """The queue the workers and the test share: the database url, the queue settings, the test's backend."""

    database_url: str
    settings: dict[str, Any]
    backend: QueueBackend


def _backend(name: str, database: Database, settings: dict[str, Any]) -> QueueBackend:
    """The test's own backend on the same store as the workers' (skipped when that backend is not in the tree)."""
    module = pytest.importorskip(f"arcana.queue.{name}_backend", reason=f"the {name} queue backend is not in this tree")
    if name == "sql":
        backend: QueueBackend = module.SqlQueueBackend(database.engine)
        return backend
    backend = module.RedisQueueBackend.from_config(QueueConfig(**settings))
    try:
        backend.stats(time.time())
    except ServiceUnavailable as exc:
        reason = f"!!! Redis worker tests NOT RUN: no server at {REDIS_URL} ({exc}). Start Redis to run them."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: this is a failure)", pytrace=False)
        pytest.skip(reason)
    return backend


@pytest.fixture(params=["sql", "redis"])
def queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedQueue]:
    """SQL on one migrated SQLite file, or Redis under a key prefix of this test's own (deleted after)."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    database = Database(DatabaseConfig(url=url))
    assert database.prepare() is None
    settings: dict[str, Any] = {"backend": request.param}
    if request.param == "redis":
        settings |= {"redis_url": REDIS_URL, "key_prefix": f"arcana-e2e-{uuid.uuid4().hex}"}
    backend = _backend(request.param, database, settings)
    yield SharedQueue(url, settings, backend)
    if request.param == "redis":
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{settings['key_prefix']}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    backend.close()
    database.close()


@pytest.fixture
def start_worker(
    tmp_path: Path, fixture_wasm: dict[str, Path], queue: SharedQueue
) -> Iterator[Callable[[], ArcanaServer]]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install(fixture_wasm["jobber"], plugins)
    # Bigger claims than the default 8: fewer write transactions on the one SQLite file.
    settings = {**queue.settings, "lease_s": LEASE_S, "poll_interval_ms": 20, "worker_concurrency": 32}
    config = {"database": {"url": queue.database_url}, "queue": settings}
    servers: list[ArcanaServer] = []

    def start() -> ArcanaServer:
        server = ArcanaServer(plugins, tmp_path, config, role="worker")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def wait_until(
    predicate: Callable[[], object], timeout: float, message: str, *servers: ArcanaServer, every: float = 0.02
) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            logs = "\n".join(s.logs()[-3000:] for s in servers)
            raise AssertionError(f"timed out after {timeout} s: {message}\n{logs}")
        time.sleep(every)


def stopped_outcomes(server: ArcanaServer) -> dict[str, int]:
    """The outcome counts a worker logs when it stops."""
    for line in server.logs().splitlines():
        if line.startswith("{") and json.loads(line).get("message") == "worker stopped":
            outcomes: dict[str, int] = json.loads(line)["outcomes"]
            return outcomes
    raise AssertionError(f"no 'worker stopped' line:\n{server.logs()[-3000:]}")


def test_a_job_whose_worker_is_killed_midway_is_finished_by_another_worker(
    start_worker: Callable[[], ArcanaServer], queue: SharedQueue
) -> None:
    backend = queue.backend
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
    start_worker: Callable[[], ArcanaServer], queue: SharedQueue
) -> None:
    backend = queue.backend
    workers = [start_worker(), start_worker()]
    ids = [
        enqueued.id
        for _ in range(10)
        for enqueued in backend.enqueue_many([JobSpec("jobber.noop") for _ in range(1000)], time.time())
    ]
    assert len(set(ids)) == 10_000
    # Looked at rarely: on SQLite every look is a reader beside the workers' writes.
    done = lambda: backend.stats(time.time()).succeeded == 10_000  # noqa: E731
    wait_until(done, 60, "10,000 jobs succeeded", *workers, every=0.5)
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


@pytest.mark.parametrize(("role", "runs_worker"), [("api", False), ("all", True)])
def test_only_the_all_and_worker_roles_run_a_worker(
    role: str, runs_worker: bool, tmp_path: Path, fixture_wasm: dict[str, Path]
) -> None:
    pytest.importorskip("arcana.queue.sql_backend", reason="the SQL queue backend is not in this tree")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install(fixture_wasm["jobber"], plugins)
    server = ArcanaServer(plugins, tmp_path, role=role).start()
    assert httpx.get(f"{server.url}/ready").status_code == 200
    assert server.stop() == 0
    # Read after a clean stop: the whole life of the process is in its log.
    messages = [json.loads(line).get("message") for line in server.logs().splitlines() if line.startswith("{")]
    assert ("worker started" in messages, "worker stopped" in messages) == (runs_worker, runs_worker)
