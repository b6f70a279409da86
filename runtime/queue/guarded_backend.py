"""The queue's backend behind its breaker, with retries where they are safe (``arcana.resilience.guard``).

``open_backend`` wraps the SQL backend in the ``database`` breaker and the
Redis one in ``redis:<host:port/db>``; the same breaker guards the store on
the same backend. Safe to repeat whatever happened: the reads (``get``,
``stats``, ``dead``), ``extend`` (a lease's end set twice is set once),
``tick`` (deduped by its schedule key) and ``sweep`` (deletes what is old
enough, again). Every other call changes state in a way a second run could
double (an enqueue without a dedupe key, a claim, an attempt's outcome,
replay, purge): repeated only when nothing reached the backend. The worker's
own outage handling (pauses, outcome retries) sits above this and is
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from arcana.queue.types import Enqueued, Job, JobSpec, Lease, QueueBackend, QueueStats
from arcana.resilience.guard import BackendGuard

T = TypeVar("T")


class GuardedQueueBackend:
    """A ``QueueBackend`` whose calls go through ``guard``; ``inner`` is the real one."""

    def __init__(self, inner: QueueBackend, guard: BackendGuard) -> None:
        self.inner = inner
        self.guard = guard

    def _safe(self, fn: Callable[[], T]) -> T:
        return self.guard.call(fn, safe=True)

    def _once(self, fn: Callable[[], T]) -> T:
        return self.guard.call(fn, safe=False)

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        return self._once(lambda: self.inner.enqueue(spec, now))

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        return self._once(lambda: self.inner.enqueue_many(specs, now))

    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        return self._once(lambda: self.inner.claim(worker, limit, now, lease_s, fair))

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        return self._safe(lambda: self.inner.extend(leases, now, lease_s))

    def complete(self, lease: Lease, result: Any, now: float) -> bool:
        return self._once(lambda: self.inner.complete(lease, result, now))

    def complete_many(self, done: Sequence[tuple[Lease, Any]], now: float) -> list[bool]:
        return self._once(lambda: self.inner.complete_many(done, now))

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        return self._once(lambda: self.inner.fail(lease, error, retry_at, now))

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        return self._once(lambda: self.inner.release(lease, run_at, now, error))

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        return self._once(lambda: self.inner.bury(lease, error, now))

    def get(self, job_id: str) -> Job | None:
        return self._safe(lambda: self.inner.get(job_id))

    def stats(self, now: float) -> QueueStats:
        return self._safe(lambda: self.inner.stats(now))

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        return self._safe(lambda: self.inner.dead(limit, offset))

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        return self._once(lambda: self.inner.replay(ids, now))

    def purge(self, ids: Sequence[str] | None) -> int:
        return self._once(lambda: self.inner.purge(ids))

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        return self._safe(lambda: self.inner.tick(key, tick, spec, now))

    def sweep(self, now: float, retention_s: float) -> int:
        return self._safe(lambda: self.inner.sweep(now, retention_s))

    def close(self) -> None:
        self.inner.close()
