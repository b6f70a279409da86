"""Fakes behind the queue's and the bus's protocols, for host-function tests without a kernel.

``MemoryQueueBackend`` keeps jobs in a dict (enqueue, dedupe and get, nothing
else): the real backends (SQL, Redis) are pinned by the queue's contract
suite, and these tests are about what the host functions check before a
backend is reached. ``RecordingBus`` stands in for ``arcana.events.EventBus``
and records what would be emitted.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arcana.queue.types import Enqueued, Job, JobSpec, JobState, Lease, QueueStats


class MemoryQueueBackend:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        for job in self.jobs.values():
            if spec.dedupe_key is not None and job.dedupe_key == spec.dedupe_key:
                return Enqueued(job.id, False)
        job_id = f"j{next(self._ids)}"
        run_at = now if spec.run_at is None else spec.run_at
        self.jobs[job_id] = Job(
            job_id, spec.type, spec.payload, spec.priority, JobState.QUEUED, 0, spec.max_retries, run_at, now, now,
            spec.owner, spec.target, spec.traceparent, spec.dedupe_key,
        )  # fmt: skip
        return Enqueued(job_id, True)

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        return [self.enqueue(spec, now) for spec in specs]

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def close(self) -> None:
        return None

    # The worker's and the operator's side: not reached by host functions.
    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        raise NotImplementedError

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        raise NotImplementedError

    def complete(self, lease: Lease, result: Any, now: float) -> bool:
        raise NotImplementedError

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        raise NotImplementedError

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        raise NotImplementedError

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        raise NotImplementedError

    def stats(self, now: float) -> QueueStats:
        raise NotImplementedError

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        raise NotImplementedError

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        raise NotImplementedError

    def purge(self, ids: Sequence[str] | None) -> int:
        raise NotImplementedError

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        raise NotImplementedError

    def sweep(self, now: float, retention_s: float) -> int:
        raise NotImplementedError


@dataclass
class Emitted:
    topic: str
    payload: dict[str, Any]
    source: str
    principal: str | None
    traceparent: str


@dataclass
class RecordingBus:
    emitted: list[Emitted] = field(default_factory=list)

    def emit(
        self,
        topic: str,
        payload: dict[str, Any],
        *,
        source: str = "kernel",
        principal: str | None = None,
        traceparent: str = "",
    ) -> None:
        self.emitted.append(Emitted(topic, payload, source, principal, traceparent))
