"""``MemoryQueueBackend``: the ``QueueBackend`` protocol in a dict, for fast in-process worker tests.

It follows every rule in ``arcana.queue.types`` (priorities, fair claims,
leases reaped on claim, stale tokens refused, dedupe, retention, ticks), so a
worker tested on it behaves the same on SQL and Redis. Set ``down`` to make
every call raise ``ServiceUnavailable`` (a backend outage); ``calls`` counts
calls by method name and ``claims`` records each claim's (limit, fair).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from arcana.errors import ServiceUnavailable
from arcana.queue.types import Enqueued, Job, JobSpec, JobState, Lease, Priority, QueueStats

RUNNABLE = (JobState.QUEUED, JobState.FAILED)


class MemoryQueueBackend:
    def __init__(self) -> None:
        self.down = False
        # Raised by every call while set: a backend bug (the protocol allows only ServiceUnavailable).
        self.bug: Exception | None = None
        self.calls: Counter[str] = Counter()
        self.claims: list[tuple[int, bool]] = []
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._order: dict[str, int] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._dedupe: dict[str, str] = {}
        self._ticks: dict[str, float] = {}
        self._seq = itertools.count()
        self.closed = False

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if self.down:
            raise ServiceUnavailable("the queue backend is unavailable", retry_after=1)
        if self.bug is not None:
            raise self.bug

    # ---------------------------------------------------------------- enqueue

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        self._enter("enqueue")
        with self._lock:
            return self._add(spec, now)

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        self._enter("enqueue_many")
        with self._lock:
            return [self._add(spec, now) for spec in specs]

    def _add(self, spec: JobSpec, now: float) -> Enqueued:
        if spec.dedupe_key is not None and spec.dedupe_key in self._dedupe:
            return Enqueued(self._dedupe[spec.dedupe_key], created=False)
        job_id = uuid.uuid4().hex
        self._jobs[job_id] = Job(
            id=job_id,
            type=spec.type,
            payload=copy.deepcopy(spec.payload),
            priority=spec.priority,
            state=JobState.QUEUED,
            attempts=0,
            max_retries=spec.max_retries,
            run_at=now if spec.run_at is None else spec.run_at,
            created_at=now,
            updated_at=now,
            owner=spec.owner,
            target=spec.target,
            traceparent=spec.traceparent,
            dedupe_key=spec.dedupe_key,
        )
        self._order[job_id] = next(self._seq)
        if spec.dedupe_key is not None:
            self._dedupe[spec.dedupe_key] = job_id
        return Enqueued(job_id, created=True)

    # ---------------------------------------------------------------- leases

    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        self._enter("claim")
        self.claims.append((limit, fair))
        with self._lock:
            self._reap(now)
            ready = [j for j in self._jobs.values() if j.state in RUNNABLE and j.run_at <= now]
            if fair:
                ready.sort(key=lambda j: (j.run_at, self._order[j.id]))
            else:
                ready.sort(key=lambda j: (j.priority, j.run_at, self._order[j.id]))
            leases = []
            for job in ready[:limit]:
                token = uuid.uuid4().hex
                leased = self._set(job, now, state=JobState.RUNNING, attempts=job.attempts + 1)
                self._tokens[job.id] = (token, now + lease_s)
                leases.append(Lease(leased, token, now + lease_s))
            return leases

    def _reap(self, now: float) -> None:
        for job_id, (_token, until) in list(self._tokens.items()):
            if until > now:
                continue
            job = self._jobs[job_id]
            del self._tokens[job_id]
            if job.attempts > job.max_retries:
                self._set(job, now, state=JobState.DEAD, error="lease expired", finished_at=now)
            else:
                self._set(job, now, state=JobState.QUEUED, run_at=now)

    def _holds(self, lease: Lease) -> bool:
        held = self._tokens.get(lease.job.id)
        return held is not None and held[0] == lease.token

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        self._enter("extend")
        with self._lock:
            held = []
            for lease in leases:
                ok = self._holds(lease)
                if ok:
                    self._tokens[lease.job.id] = (lease.token, now + lease_s)
                held.append(ok)
            return held

    def complete(self, lease: Lease, result: Any, now: float) -> bool:
        self._enter("complete")
        return self._finish(lease, now, state=JobState.SUCCEEDED, result=copy.deepcopy(result), finished_at=now)

    def complete_many(self, done: Sequence[tuple[Lease, Any]], now: float) -> list[bool]:
        self._enter("complete_many")
        return [
            self._finish(lease, now, state=JobState.SUCCEEDED, result=copy.deepcopy(result), finished_at=now)
            for lease, result in done
        ]

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        self._enter("fail")
        if retry_at is None:
            return self._finish(lease, now, state=JobState.DEAD, error=error, finished_at=now)
        return self._finish(lease, now, state=JobState.FAILED, error=error, run_at=retry_at)

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        self._enter("release")
        job = lease.job
        return self._finish(lease, now, state=JobState.QUEUED, run_at=run_at, attempts=job.attempts - 1, error=error)

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        self._enter("bury")
        return self._finish(lease, now, state=JobState.DEAD, error=error, finished_at=now)

    def _finish(self, lease: Lease, now: float, **changes: Any) -> bool:
        with self._lock:
            if not self._holds(lease):
                return False
            del self._tokens[lease.job.id]
            self._set(self._jobs[lease.job.id], now, **changes)
            return True

    def _set(self, job: Job, now: float, **changes: Any) -> Job:
        updated = dataclasses.replace(job, updated_at=now, **changes)
        self._jobs[job.id] = updated
        return updated

    # ---------------------------------------------------------------- reading and operators

    def get(self, job_id: str) -> Job | None:
        self._enter("get")
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        """Every stored job, in enqueue order (a test's view; not in the protocol)."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: self._order[j.id])

    def stats(self, now: float) -> QueueStats:
        self._enter("stats")
        with self._lock:
            jobs = list(self._jobs.values())
        ready = {p: 0 for p in Priority}
        delayed = 0
        for job in jobs:
            if job.state in RUNNABLE:
                if job.run_at <= now:
                    ready[job.priority] += 1
                else:
                    delayed += 1
        count = Counter(j.state for j in jobs)
        return QueueStats(ready, delayed, count[JobState.RUNNING], count[JobState.DEAD], count[JobState.SUCCEEDED])

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        self._enter("dead")
        with self._lock:
            gone = [j for j in self._jobs.values() if j.state == JobState.DEAD]
        gone.sort(key=lambda j: (j.finished_at or 0.0, self._order[j.id]), reverse=True)
        return gone[offset : offset + limit]

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        self._enter("replay")
        with self._lock:
            chosen = [j for j in self._jobs.values() if j.state == JobState.DEAD and (ids is None or j.id in ids)]
            for job in chosen:
                self._set(job, now, state=JobState.QUEUED, attempts=0, run_at=now, finished_at=None)
            return len(chosen)

    def purge(self, ids: Sequence[str] | None) -> int:
        self._enter("purge")
        with self._lock:
            chosen = [j for j in self._jobs.values() if j.state == JobState.DEAD and (ids is None or j.id in ids)]
            for job in chosen:
                self._drop(job)
            return len(chosen)

    def _drop(self, job: Job) -> None:
        del self._jobs[job.id]
        del self._order[job.id]
        if job.dedupe_key is not None:
            self._dedupe.pop(job.dedupe_key, None)

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        self._enter("tick")
        with self._lock:
            last = self._ticks.get(key)
            if last is not None and tick <= last:
                return None
            self._ticks[key] = tick
            return None if last is None else self._add(spec, now)

    def sweep(self, now: float, retention_s: float) -> int:
        self._enter("sweep")
        with self._lock:
            old = [
                j
                for j in self._jobs.values()
                if j.state == JobState.SUCCEEDED and j.finished_at is not None and j.finished_at < now - retention_s
            ]
            for job in old:
                self._drop(job)
            return len(old)

    def close(self) -> None:
        self.closed = True


class FakeClock:
    """The wall clock the worker and backend are given: still unless a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
