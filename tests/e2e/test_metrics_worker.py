"""A worker-only process (`arcana serve --role worker`) serves its own /metrics on server.metrics_port.

Each process is its own scrape target (README "Metrics"): a worker's job
outcomes are in its registry only, so without this port they could not be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.queue.types import JobSpec, JobState
from conftest import install
from e2e.server import ArcanaServer, admin_headers, free_port
from fakes import wait_for
from metrics_text import samples, value


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'queue.db'}"))
    assert database.prepare() is None
    yield database
    database.close()


@pytest.fixture
def worker(
    tmp_path: Path, fixture_wasm: dict[str, Path], database: Database
) -> Iterator[Callable[[dict[str, object]], ArcanaServer]]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install(fixture_wasm["jobber"], plugins)
    servers: list[ArcanaServer] = []

    def start(server_settings: dict[str, object]) -> ArcanaServer:
        config = {"database": {"url": str(database.engine.url)}, "server": server_settings}
        servers.append(ArcanaServer(plugins, tmp_path, config, role="worker").start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_a_worker_serves_its_job_outcomes_on_the_metrics_port(
    worker: Callable[[dict[str, object]], ArcanaServer], database: Database
) -> None:
    sql_backend = pytest.importorskip("arcana.queue.sql_backend")
    port = free_port()
    server = worker({"metrics_port": port})
    backend = sql_backend.SqlQueueBackend(database.engine)
    job_id = backend.enqueue(JobSpec("jobber.noop"), time.time()).id
    wait_for(lambda: backend.get(job_id).state == JobState.SUCCEEDED, 30, f"the job ran:\n{server.logs()[-3000:]}")

    url = f"http://127.0.0.1:{port}/metrics"
    assert httpx.get(url).status_code == 401, "the same gate as on the REST edge"
    answer = httpx.get(url, headers=admin_headers())
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    parsed = samples(answer.text)
    assert value(parsed, "arcana_jobs_total", kind="job", outcome="succeeded") == 1
    assert value(parsed, "arcana_queue_stats_up") == 1
    other = httpx.get(f"http://127.0.0.1:{port}/api/v1/admin/plugins", headers=admin_headers())
    assert other.status_code == 404 and other.json()["code"] == "NOT_FOUND"
    assert server.stop() == 0
