"""The scheduler over an in-memory backend that keeps the protocol's tick rules, with a clock the test moves."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from arcana.config import QueueConfig
from arcana.manifest import Manifest, parse_manifest
from arcana.queue.jobs import JobQueue
from arcana.queue.scheduler import MAX_KEY_BYTES, Scheduler, schedule_key
from arcana.queue.types import Priority
from fakes import async_wait_for
from queue_fakes import SCHEDULER, MemoryQueueBackend

# 2026-12-02 09:00:00 UTC, a multiple of every period used here.
T0 = 1_796_202_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def plugin(*schedules: str, name: str = "notes", jobs: tuple[str, ...] = ("notes.reindex",)) -> Manifest:
    text = f'[plugin]\nname = "{name}"\nversion = "1.0.0"\n'
    text += "".join(f'[[job]]\ntype = "{j}"\nhandler = "h{i}"\n' for i, j in enumerate(jobs))
    text += "".join(f"[[schedule]]\n{s}\n" for s in schedules)
    return parse_manifest(text)


def snapshot(*manifests: Manifest) -> Any:
    """What the scheduler reads of a registry snapshot: plugins by name, each with its manifest."""
    return SimpleNamespace(plugins={m.name: SimpleNamespace(manifest=m) for m in manifests})


def scheduler(
    backend: MemoryQueueBackend, clock: Clock, *manifests: Manifest, config: QueueConfig | None = None
) -> Scheduler:
    current = snapshot(*manifests)
    return Scheduler(JobQueue(config or QueueConfig(), backend, clock), lambda: current)


EVERY_MINUTE = 'every = "1m"\njob = "notes.reindex"'


def test_a_new_schedule_waits_for_its_next_tick_then_enqueues_it_once() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0 + 5)
    s = scheduler(backend, clock, plugin(EVERY_MINUTE + '\npayload = { full = true }\npriority = "high"'))
    assert s.run_pass() == []  # T0 is the first tick seen: recorded, not enqueued
    clock.now = T0 + 59
    assert s.run_pass() == []
    clock.now = T0 + 60
    (first,) = s.run_pass()
    clock.now = T0 + 90
    assert s.run_pass() == [] and s.run_pass() == []
    (job,) = backend.specs()
    key = "notes/0:notes.reindex:1m"
    assert (job.type, job.payload, job.priority, job.owner) == ("notes.reindex", {"full": True}, Priority.HIGH, "notes")
    assert job.dedupe_key == f"schedule:{key}:{int(T0 + 60)}"
    assert backend.ticks == {key: T0 + 60} and first.created


def test_a_span_of_missed_ticks_is_enqueued_once() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    s = scheduler(backend, clock, plugin('cron = "*/5 * * * *"\njob = "notes.reindex"'))
    s.run_pass()
    clock.now = T0 + 3 * 3600 + 7 * 60  # nothing ran for three hours: 37 ticks went by
    assert len(s.run_pass()) == 1
    (job,) = backend.specs()
    assert job.dedupe_key is not None and job.dedupe_key.endswith(f":{int(T0 + 3 * 3600 + 5 * 60)}")


def test_two_schedulers_on_one_backend_enqueue_each_tick_once() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    manifest = plugin(EVERY_MINUTE, 'every = "30s"\njob = "notes.reindex"')
    a, b = scheduler(backend, clock, manifest), scheduler(backend, clock, manifest)
    for step in range(10):
        clock.now = T0 + step * 15
        a.run_pass()
        b.run_pass()
    # Ticks after T0 in 135 s: every minute twice, every 30 s four times.
    ticks = sorted((j.dedupe_key or "") for j in backend.specs())
    assert len(ticks) == len(set(ticks)) == 6


def test_schedulers_racing_on_threads_enqueue_each_tick_once() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    manifest = plugin(EVERY_MINUTE)
    schedulers = [scheduler(backend, clock, manifest) for _ in range(8)]
    schedulers[0].run_pass()
    clock.now = T0 + 60
    start = threading.Barrier(len(schedulers))

    def run(s: Scheduler) -> None:
        start.wait()
        s.run_pass()

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(backend.specs()) == 1


def test_an_unchanged_tick_costs_no_backend_call() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    s = scheduler(backend, clock, plugin('every = "1h"\njob = "notes.reindex"'))
    for second in range(5):
        clock.now = T0 + second
        s.run_pass()
    assert backend.calls.total() == 1


def test_changing_a_schedule_changes_its_key_and_it_starts_at_its_next_tick() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    current = snapshot(plugin(EVERY_MINUTE))
    s = Scheduler(JobQueue(QueueConfig(), backend, clock), lambda: current)
    s.run_pass()
    current = snapshot(plugin('every = "2m"\njob = "notes.reindex"'))
    clock.now = T0 + 60
    assert s.run_pass() == []  # the new key's first tick: recorded only
    clock.now = T0 + 120
    assert len(s.run_pass()) == 1
    assert set(backend.ticks) == {"notes/0:notes.reindex:1m", "notes/0:notes.reindex:2m"}


def test_a_backend_outage_is_retried_on_the_next_pass(caplog: pytest.LogCaptureFixture) -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    s = scheduler(backend, clock, plugin(EVERY_MINUTE))
    s.interval_s = 0.001

    async def main() -> None:
        backend.down = True
        with caplog.at_level(logging.INFO, "arcana.queue.scheduler"):
            s.start()
            await async_wait_for(lambda: backend.calls.total() >= 3, 5, "the scheduler did not retry")
            clock.now = T0 + 60
            backend.down = False
            await async_wait_for(lambda: T0 + 60 in backend.ticks.values(), 5, "the scheduler did not recover")
            clock.now = T0 + 120
            await async_wait_for(lambda: len(backend.specs()) == 1, 5, "the tick after recovery was not enqueued")
        await s.stop()

    asyncio.run(main())
    assert caplog.text.count("the queue is unavailable") == 1
    assert "available again" in caplog.text


def test_a_payload_over_the_queue_bound_skips_that_schedule_only(caplog: pytest.LogCaptureFixture) -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    big = EVERY_MINUTE + f'\npayload = {{ text = "{"x" * 300}" }}'
    s = scheduler(
        backend, clock, plugin(big, 'every = "30s"\njob = "notes.reindex"'), config=QueueConfig(max_payload_bytes=200)
    )
    with caplog.at_level(logging.ERROR, "arcana.queue.scheduler"):
        s.run_pass()
        clock.now = T0 + 60
        assert len(s.run_pass()) == 1
    assert "notes/0:notes.reindex:1m skipped" in caplog.text and "queue.max_payload_bytes" in caplog.text
    assert backend.specs()[0].dedupe_key == f"schedule:notes/1:notes.reindex:30s:{int(T0 + 60)}"


def test_an_unloaded_plugin_schedules_nothing() -> None:
    backend, clock = MemoryQueueBackend(SCHEDULER), Clock(T0)
    current = snapshot(plugin(EVERY_MINUTE))
    s = Scheduler(JobQueue(QueueConfig(), backend, clock), lambda: current)
    s.run_pass()
    current = snapshot()
    clock.now = T0 + 600
    assert s.run_pass() == [] and backend.calls.total() == 1


def test_a_long_key_is_shortened_and_still_names_its_plugin_and_index() -> None:
    job = "notes." + "long" * 60
    manifest = plugin(f'every = "1m"\njob = "{job}"', jobs=(job,))
    key = schedule_key("notes", 0, manifest.schedules[0])
    assert key.startswith("notes/0:") and len(key.encode()) <= MAX_KEY_BYTES
    other = schedule_key("notes", 0, plugin(f'every = "2m"\njob = "{job}"', jobs=(job,)).schedules[0])
    assert other != key
