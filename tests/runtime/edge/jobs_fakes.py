"""An in-memory queue backend for the operator edges' tests: what get, stats, dead, replay and purge need.

It follows the ``QueueBackend`` rules for those five (and ``enqueue``, to
seed jobs); the claiming side is the real backends' business and is not
here. ``down = True`` makes every method raise ServiceUnavailable, as a real
backend does when its server is gone.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Sequence
from typing import Any

from arcana.errors import ServiceUnavailable
from arcana.queue.types import Enqueued, Job, JobSpec, JobState, Lease, Priority, QueueStats


class FakeQueueBackend:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.down = False
        self.calls: list[str] = []
        # Set to block stats() until released (a backend that hangs).
        self.stats_gate: threading.Event | None = None
        self._ids = itertools.count(1)

    def _check(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ServiceUnavailable("the queue backend is unavailable", retry_after=2)

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        self._check("enqueue")
        job_id = f"job-{next(self._ids)}"
        run_at = now if spec.run_at is None else spec.run_at
        self.jobs[job_id] = Job(
            job_id, spec.type, spec.payload, spec.priority, JobState.QUEUED, 0, spec.max_retries, run_at, now, now,
            spec.owner, spec.target, spec.traceparent, spec.dedupe_key,
        )  # fmt: skip
        return Enqueued(job_id, True)

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        return [self.enqueue(spec, now) for spec in specs]

    def seed_dead(self, job_type: str, error: str, now: float, attempts: int = 4) -> str:
        """A job that used its attempts and died at ``now`` (test set-up)."""
        job_id = self.enqueue(JobSpec(job_type, {"n": 1}), now - 10).id
        self.jobs[job_id] = dataclasses.replace(
            self.jobs[job_id], state=JobState.DEAD, attempts=attempts, error=error, updated_at=now, finished_at=now
        )
        return job_id

    def set_state(self, job_id: str, state: JobState) -> None:
        self.jobs[job_id] = dataclasses.replace(self.jobs[job_id], state=state)

    def get(self, job_id: str) -> Job | None:
        self._check("get")
        return self.jobs.get(job_id)

    def stats(self, now: float) -> QueueStats:
        self._check("stats")
        if self.stats_gate is not None:
            self.stats_gate.wait()
        ready = dict.fromkeys(Priority, 0)
        counts = {"delayed": 0, JobState.RUNNING: 0, JobState.DEAD: 0, JobState.SUCCEEDED: 0}
        for job in self.jobs.values():
            if job.state in (JobState.QUEUED, JobState.FAILED):
                if job.run_at <= now:
                    ready[job.priority] += 1
                else:
                    counts["delayed"] += 1
            else:
                counts[job.state] += 1
        return QueueStats(
            ready, counts["delayed"], counts[JobState.RUNNING], counts[JobState.DEAD], counts[JobState.SUCCEEDED]
        )

    def _dead(self) -> list[Job]:
        dead = [j for j in self.jobs.values() if j.state == JobState.DEAD]
        return sorted(dead, key=lambda j: (j.finished_at or j.updated_at, j.id), reverse=True)

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        self._check("dead")
        return self._dead()[offset : offset + limit]

    def _selected(self, ids: Sequence[str] | None) -> list[Job]:
        return [j for j in self._dead() if ids is None or j.id in ids]

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        self._check("replay")
        chosen = self._selected(ids)
        for job in chosen:
            self.jobs[job.id] = dataclasses.replace(
                job, state=JobState.QUEUED, attempts=0, run_at=now, updated_at=now, finished_at=None
            )
        return len(chosen)

    def purge(self, ids: Sequence[str] | None) -> int:
        self._check("purge")
        chosen = self._selected(ids)
        for job in chosen:
            del self.jobs[job.id]
        return len(chosen)

    # The claiming side is not faked: an operator edge that calls it is a bug.
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

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        raise NotImplementedError

    def sweep(self, now: float, retention_s: float) -> int:
        raise NotImplementedError

    def close(self) -> None:
        self.calls.append("close")
