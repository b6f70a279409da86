"""Succeeded jobs are recorded in batches: those finishing while one batch is in flight share the next."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from arcana.errors import ServiceUnavailable
from arcana.queue.types import Job, JobState, Lease, Priority
from arcana.queue.worker import Completions


def lease(job_id: str) -> Lease:
    job = Job(job_id, "t", None, Priority.NORMAL, JobState.RUNNING, 1, 3, 0.0, 0.0, 0.0)
    return Lease(job, "token", 30.0)


class Recorder:
    """A backend's complete_many that the test holds open, so completions pile up behind it."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.open = asyncio.Event()
        self.held = held
        self.error: Exception | None = None

    async def __call__(self, done: list[tuple[Lease, Any]]) -> list[bool]:
        self.batches.append([lease.job.id for lease, _ in done])
        await self.open.wait()
        if self.error is not None:
            raise self.error
        return [self.held is None or lease.job.id in self.held for lease, _ in done]


def test_a_lone_completion_is_recorded_at_once_in_a_batch_of_one() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        recorder.open.set()
        assert await Completions(recorder).complete(lease("a"), {"n": 1}) is True
        assert recorder.batches == [["a"]]

    asyncio.run(scenario())


def test_completions_arriving_while_a_batch_is_in_flight_share_the_next_batch() -> None:
    async def scenario() -> None:
        recorder = Recorder(held={"a", "b", "d"})
        completions = Completions(recorder)
        first = asyncio.create_task(completions.complete(lease("a"), 1))
        await asyncio.sleep(0)
        later = [asyncio.create_task(completions.complete(lease(i), i)) for i in ("b", "c", "d")]
        await asyncio.sleep(0)
        recorder.open.set()
        assert await first is True
        assert [await task for task in later] == [True, False, True]  # c's lease was lost
        assert recorder.batches == [["a"], ["b", "c", "d"]]

    asyncio.run(scenario())


def test_a_backend_failure_reaches_every_waiter_of_its_batch_and_the_next_batch_still_goes() -> None:
    async def scenario() -> None:
        recorder = Recorder()
        recorder.error = ServiceUnavailable("down")
        completions = Completions(recorder)
        waiters = [asyncio.create_task(completions.complete(lease(i), None)) for i in ("a", "b")]
        await asyncio.sleep(0)
        recorder.open.set()
        for waiter in waiters:
            with pytest.raises(ServiceUnavailable):
                await waiter
        recorder.error = None
        assert await completions.complete(lease("c"), None) is True
        assert recorder.batches == [["a", "b"], ["c"]]

    asyncio.run(scenario())
