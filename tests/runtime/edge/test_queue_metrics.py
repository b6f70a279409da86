"""The queue's depth on /metrics (arcana.edge.metrics.QueueDepth): read on scrape, cached, never hanging."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from arcana.config import QueueConfig
from arcana.edge.metrics import QueueDepth
from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from arcana.queue.jobs import JobQueue
from arcana.queue.types import JobSpec, JobState, Priority, QueueStats
from fakes import Kernels, bearer, wait_for
from queue_fakes import OPERATOR, MemoryQueueBackend

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def scrape(depth: QueueDepth) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(depth)
    return generate_latest(registry).decode()


def stats_of(backend: MemoryQueueBackend) -> QueueStats:
    return backend.stats(NOW)


def test_the_gauges_show_ready_per_priority_delayed_running_and_dead() -> None:
    backend = MemoryQueueBackend(OPERATOR)
    for priority in (Priority.CRITICAL, Priority.LOW, Priority.LOW):
        backend.enqueue(JobSpec("t", priority=priority), NOW - 1)
    backend.enqueue(JobSpec("t", run_at=NOW + 5), NOW)
    backend.set_state(backend.enqueue(JobSpec("t"), NOW).id, JobState.RUNNING)
    backend.seed_dead("t", "boom", NOW)

    text = scrape(QueueDepth(lambda: stats_of(backend)))
    for line in (
        'arcana_queue_ready{priority="critical"} 1.0',
        'arcana_queue_ready{priority="high"} 0.0',
        'arcana_queue_ready{priority="normal"} 0.0',
        'arcana_queue_ready{priority="low"} 2.0',
        "arcana_queue_delayed 1.0",
        "arcana_queue_running 1.0",
        "arcana_queue_dead 1.0",
        "arcana_queue_stats_up 1.0",
    ):
        assert line in text.splitlines()


def test_a_backend_that_raises_gives_up_0_and_no_depth(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryQueueBackend(OPERATOR)
    backend.down = True
    text = scrape(QueueDepth(lambda: stats_of(backend)))
    assert "arcana_queue_stats_up 0.0" in text.splitlines()
    assert "arcana_queue_ready" not in text and "arcana_queue_dead" not in text
    assert "queue stats unavailable: the queue backend is unavailable" in caplog.text


def test_a_hanging_backend_is_given_up_on_and_not_asked_again_while_it_hangs() -> None:
    backend = MemoryQueueBackend(OPERATOR)
    backend.gates["stats"] = threading.Event()
    clock = Clock()
    depth = QueueDepth(lambda: stats_of(backend), timeout_s=0.05, cache_s=1.0, clock=clock)
    answers: list[str] = []
    scraper = threading.Thread(target=lambda: answers.append(scrape(depth)))
    scraper.start()
    scraper.join(10)
    assert not scraper.is_alive(), "a scrape waited on a backend that hangs"
    assert "arcana_queue_stats_up 0.0" in answers[0].splitlines()

    clock.now += 2  # past the cache: the next scrape waits again on the read still running
    assert depth.read() is None
    assert backend.call_log == ["stats"], "a second read started beside the one stuck"

    backend.gates["stats"].set()

    def read_after_the_cache() -> QueueStats | None:
        clock.now += 2
        return depth.read()

    wait_for(read_after_the_cache, 10, "the backend answered again but the gauges did not come back")


def test_reads_within_the_cache_time_share_one_backend_call() -> None:
    backend = MemoryQueueBackend(OPERATOR)
    clock = Clock()
    depth = QueueDepth(lambda: stats_of(backend), cache_s=5.0, clock=clock)
    depth.read()
    clock.now += 4.9
    depth.read()
    assert backend.call_log == ["stats"]
    clock.now += 0.2
    depth.read()
    assert backend.call_log == ["stats", "stats"]


@pytest.fixture
def backend() -> MemoryQueueBackend:
    return MemoryQueueBackend(OPERATOR)


@pytest.fixture
def kernel(kernels: Kernels, backend: MemoryQueueBackend, monkeypatch: pytest.MonkeyPatch) -> Kernel:
    queue = JobQueue(QueueConfig(), backend, clock=lambda: NOW)
    monkeypatch.setattr(Kernel, "jobs", property(lambda _kernel: queue))
    return kernels()


def get_metrics(kernel: Kernel, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            return await client.get("/metrics", **kwargs)

    return asyncio.run(main())


def test_metrics_on_the_rest_app_include_the_queue_gauges_behind_the_gate(
    kernel: Kernel, backend: MemoryQueueBackend
) -> None:
    backend.enqueue(JobSpec("t", priority=Priority.HIGH), NOW - 1)
    backend.enqueue(JobSpec("t", priority=Priority.HIGH), NOW - 1)

    refused = get_metrics(kernel)
    assert refused.status_code == 401 and backend.call_log == ["enqueue", "enqueue"], "the gate comes first"
    lines = get_metrics(kernel, headers=bearer("root", ["admin"])).text.splitlines()
    assert 'arcana_queue_ready{priority="high"} 2.0' in lines and "arcana_queue_stats_up 1.0" in lines
    assert any(line.startswith("python_info") for line in lines), "the process registry is still there"


def test_metrics_still_answer_when_the_queue_backend_is_down(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    backend.down = True
    response = get_metrics(kernel, headers=bearer("root", ["admin"]))
    assert response.status_code == 200
    assert "arcana_queue_stats_up 0.0" in response.text.splitlines()
