"""An in-memory ``QueueBackend`` with just what the scheduler and the event bus use: enqueue and tick.

It follows the protocol's rules for those (dedupe by key; a tick recorded
only when newer than the last one for its key, the first one recorded
without enqueuing) under one lock, so several schedulers on threads can
share it. ``down = True`` makes every call fail as a backend outage does.
The other methods are not needed here and say so.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from arcana.errors import ServiceUnavailable
from arcana.queue.types import Enqueued, JobSpec


class MemoryBackend:
    def __init__(self) -> None:
        self.jobs: dict[str, JobSpec] = {}
        self.ticks: dict[str, float] = {}
        self.down = False
        self.calls = 0
        self._by_dedupe: dict[str, str] = {}
        self._lock = threading.Lock()

    def _available(self) -> None:
        self.calls += 1
        if self.down:
            raise ServiceUnavailable("queue backend unreachable (test outage)")

    def _add(self, spec: JobSpec) -> Enqueued:
        if spec.dedupe_key is not None and spec.dedupe_key in self._by_dedupe:
            return Enqueued(self._by_dedupe[spec.dedupe_key], created=False)
        job_id = f"j{len(self.jobs) + 1}"
        self.jobs[job_id] = spec
        if spec.dedupe_key is not None:
            self._by_dedupe[spec.dedupe_key] = job_id
        return Enqueued(job_id, created=True)

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        with self._lock:
            self._available()
            return self._add(spec)

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        with self._lock:
            self._available()
            return [self._add(s) for s in specs]

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        with self._lock:
            self._available()
            last = self.ticks.get(key)
            if last is not None and tick <= last:
                return None
            self.ticks[key] = tick
            return None if last is None else self._add(spec)

    def specs(self) -> list[JobSpec]:
        with self._lock:
            return list(self.jobs.values())

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise NotImplementedError(f"MemoryBackend does not implement {name}; it serves the scheduler and the bus")
