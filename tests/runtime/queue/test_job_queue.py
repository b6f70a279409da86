"""JobQueue, the one door into the queue: the bounds on what comes in, and the depth the queue may reach."""

from __future__ import annotations

from typing import Any

import pytest

from arcana.config import QueueConfig
from arcana.errors import PayloadTooLarge, ServiceUnavailable, ValidationFailed
from arcana.queue.jobs import JobQueue
from arcana.queue.types import JobSpec
from queue_fakes import FakeClock as Clock
from queue_fakes import MemoryQueueBackend


def queue(clock: Clock, **settings: Any) -> tuple[JobQueue, MemoryQueueBackend]:
    backend = MemoryQueueBackend()
    return JobQueue(QueueConfig(**settings), backend, clock=clock), backend


def test_an_enqueue_past_max_depth_is_refused_with_503_and_stores_nothing() -> None:
    jobs, backend = queue(Clock(), max_depth=3)
    for _ in range(3):
        jobs.enqueue(JobSpec("t"))
    with pytest.raises(ServiceUnavailable) as refused:
        jobs.enqueue(JobSpec("t"))
    assert "queue.max_depth is 3" in refused.value.message and refused.value.retry_after == 1
    with pytest.raises(ServiceUnavailable):
        jobs.enqueue_many([JobSpec("t")])
    assert len(backend.jobs) == 3


def test_a_batch_that_would_cross_max_depth_is_refused_whole() -> None:
    jobs, backend = queue(Clock(), max_depth=4)
    jobs.enqueue_many([JobSpec("t"), JobSpec("t")])
    with pytest.raises(ServiceUnavailable):
        jobs.enqueue_many([JobSpec("t")] * 3)
    assert len(backend.jobs) == 2
    jobs.enqueue_many([JobSpec("t")] * 2)
    assert len(backend.jobs) == 4


def test_room_comes_back_once_jobs_finish_and_the_depth_is_read_again() -> None:
    clock = Clock()
    jobs, backend = queue(clock, max_depth=2, depth_check_s=1.0)
    jobs.enqueue(JobSpec("t"))
    jobs.enqueue(JobSpec("t"))
    (lease,) = backend.claim("w", 1, clock(), 30)
    backend.complete(lease, None, clock())
    with pytest.raises(ServiceUnavailable):  # the depth read a moment ago still counts the finished job
        jobs.enqueue(JobSpec("t"))
    clock.advance(1.0)
    jobs.enqueue(JobSpec("t"))
    assert backend.calls["stats"] == 2  # one read per depth_check_s, whatever the enqueues in between


def test_running_and_delayed_jobs_count_toward_the_depth_and_finished_ones_do_not() -> None:
    clock = Clock()
    jobs, backend = queue(clock, max_depth=3, depth_check_s=1.0)
    jobs.enqueue(JobSpec("t"))
    jobs.enqueue(jobs.spec("t", delay_ms=60_000, owner="p"))
    jobs.enqueue(JobSpec("done"))
    leases = backend.claim("w", 2, clock(), 30)
    done = next(lease for lease in leases if lease.job.type == "done")
    backend.complete(done, None, clock())
    clock.advance(1.0)  # read again: one running, one delayed, one succeeded
    jobs.enqueue(JobSpec("t"))
    with pytest.raises(ServiceUnavailable):
        jobs.enqueue(JobSpec("t"))


def test_max_depth_zero_is_no_limit() -> None:
    jobs, backend = queue(Clock(), max_depth=0)
    jobs.enqueue_many([JobSpec("t")] * 50)
    assert len(backend.jobs) == 50 and backend.calls["stats"] == 0


def test_spec_refuses_what_breaks_the_bounds_naming_the_key() -> None:
    jobs, _ = queue(Clock(), max_payload_bytes=16, max_retries_limit=5, max_delay_s=60, max_dedupe_key_bytes=8)
    with pytest.raises(PayloadTooLarge, match=r"queue\.max_payload_bytes"):
        jobs.spec("t", {"text": "x" * 32}, owner="p")
    with pytest.raises(ValidationFailed, match="max_retries"):
        jobs.spec("t", max_retries=6, owner="p")
    with pytest.raises(ValidationFailed, match=r"queue\.max_delay_s"):
        jobs.spec("t", delay_ms=61_000, owner="p")
    with pytest.raises(ValidationFailed, match="dedupe_key"):
        jobs.spec("t", dedupe_key="k" * 9, owner="p")
    with pytest.raises(ValidationFailed, match="priority"):
        jobs.spec("t", priority="urgent", owner="p")


def test_listeners_hear_each_enqueue_that_stored_a_job_and_not_a_dedupe_hit() -> None:
    jobs, _ = queue(Clock())
    heard: list[str] = []
    remove = jobs.on_enqueued(lambda: heard.append("enqueued"))
    jobs.enqueue(JobSpec("t", dedupe_key="once"))
    jobs.enqueue(JobSpec("t", dedupe_key="once"))
    jobs.enqueue_many([JobSpec("t", dedupe_key="once")])
    jobs.enqueue_many([JobSpec("t"), JobSpec("t")])
    assert heard == ["enqueued", "enqueued"]
    remove()
    jobs.enqueue(JobSpec("t"))
    assert heard == ["enqueued", "enqueued"]
