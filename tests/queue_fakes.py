"""The test suite's one in-memory ``QueueBackend`` (``MemoryQueueBackend``) and the bus's recording fake.

``MemoryQueueBackend`` keeps the protocol in a dict and follows every rule in
``arcana.queue.types`` (priorities, fair claims, leases reaped on claim, stale
tokens refused, dedupe, retention, ticks), so code tested on it behaves the
same on SQL and Redis (those are pinned by ``tests/runtime/queue/test_contract.py``).
Job ids are ``j1``, ``j2``, ... in enqueue order.

What tests steer and read, none of it part of the protocol:

* ``down``: every call raises ``ServiceUnavailable`` (retry after
  ``retry_after`` seconds), as a real backend does when its server is gone.
* ``bug``: every call raises that exception (the protocol allows only
  ServiceUnavailable: a backend bug).
* ``gates``: a call to a method named here waits until its event is set (a
  backend that hangs), outside the lock so other calls still answer.
* ``only``: the methods the code under test may reach; any other raises
  NotImplementedError (see ``HOST_FUNCTIONS``, ``OPERATOR``, ``SCHEDULER``).
* ``calls`` counts calls by method name, ``call_log`` lists them in order
  (``close`` included), ``claims`` records each claim's (limit, fair).
* ``jobs`` (by id, enqueue order), ``all()``, ``specs()`` (every spec that
  created a job, as given) and ``ticks`` (the last tick per schedule key) show
  what is stored; ``seed_dead`` and ``set_state`` set up jobs directly.

``RecordingBus`` stands in for ``arcana.events.EventBus`` and records what
would be emitted as ``Emitted`` rows.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from arcana.errors import ServiceUnavailable
from arcana.queue.types import Enqueued, Job, JobSpec, JobState, Lease, Priority, QueueStats

RUNNABLE = (JobState.QUEUED, JobState.FAILED)

# What each caller of a backend may reach (``close`` is always allowed; ``stats`` is how JobQueue reads
# the depth that queue.max_depth bounds before an enqueue).
# Host functions (queue_enqueue, queue_status, events): enqueue and read back.
HOST_FUNCTIONS = frozenset({"enqueue", "enqueue_many", "get", "stats"})
# The operator's edges (REST, gRPC, CLI): read, replay and purge; enqueue only to seed jobs.
OPERATOR = frozenset({"enqueue", "enqueue_many", "get", "stats", "dead", "replay", "purge"})
# The scheduler and the event bus: enqueue and tick.
SCHEDULER = frozenset({"enqueue", "enqueue_many", "tick", "stats"})


class MemoryQueueBackend:
    def __init__(self, only: Collection[str] | None = None) -> None:
        self.only = None if only is None else frozenset(only)
        self.down = False
        self.retry_after = 2
        # Raised by every call while set: a backend bug (the protocol allows only ServiceUnavailable).
        self.bug: Exception | None = None
        self.gates: dict[str, threading.Event] = {}
        self.calls: Counter[str] = Counter()
        self.call_log: list[str] = []
        self.claims: list[tuple[int, bool]] = []
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._order: dict[str, int] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._dedupe: dict[str, str] = {}
        self._ticks: dict[str, float] = {}
        self._specs: list[JobSpec] = []
        self._seq = itertools.count(1)
        self.closed = False

    def _enter(self, method: str) -> None:
        if self.only is not None and method not in self.only:
            raise NotImplementedError(f"MemoryQueueBackend: {method} is not reached by the code under test")
        with self._lock:
            self.calls[method] += 1
            self.call_log.append(method)
        if self.down:
            raise ServiceUnavailable("the queue backend is unavailable", retry_after=self.retry_after)
        if self.bug is not None:
            raise self.bug
        gate = self.gates.get(method)
        if gate is not None:
            gate.wait()

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
        seq = next(self._seq)
        job_id = f"j{seq}"
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
        self._order[job_id] = seq
        self._specs.append(dataclasses.replace(spec, payload=copy.deepcopy(spec.payload)))
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

    @property
    def jobs(self) -> dict[str, Job]:
        """Every stored job by id, in enqueue order (a copy: a test's view)."""
        return {job.id: job for job in self.all()}

    def specs(self) -> list[JobSpec]:
        """Every spec that created a job, as given, in enqueue order (deduped ones created nothing)."""
        with self._lock:
            return list(self._specs)

    @property
    def ticks(self) -> dict[str, float]:
        """The last tick recorded per schedule key (a copy)."""
        with self._lock:
            return dict(self._ticks)

    def seed_dead(self, job_type: str, error: str, now: float, attempts: int = 4) -> str:
        """A job enqueued (a counted call) that used its attempts and died at ``now`` (test set-up)."""
        job_id = self.enqueue(JobSpec(job_type, {"n": 1}), now - 10).id
        with self._lock:
            self._set(self._jobs[job_id], now, state=JobState.DEAD, attempts=attempts, error=error, finished_at=now)
        return job_id

    def set_state(self, job_id: str, state: JobState) -> None:
        """Put a job in ``state`` directly, no lease involved (test set-up for what stats counts)."""
        with self._lock:
            self._jobs[job_id] = dataclasses.replace(self._jobs[job_id], state=state)

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
        with self._lock:
            self.call_log.append("close")
        self.closed = True


class FakeClock:
    """The wall clock the worker and backend are given: still unless a test moves it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Emitted:
    topic: str
    payload: dict[str, Any]
    source: str
    principal: str | None
    traceparent: str


@dataclass
class RecordingBus:
    """Stands in for ``arcana.events.EventBus``: records what would be emitted."""

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
