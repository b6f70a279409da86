"""``JobQueue``: the one door into the queue for the kernel, host functions, events and operators.

It checks what comes from outside (a plugin's ``queue_enqueue``, an operator's
replay) against the ``queue`` config's bounds, turns a delay into ``run_at``
on the wall clock, and calls the backend. Blocking, like the backend: call it
off the event loop.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from arcana import jsonio
from arcana.config import QueueConfig
from arcana.errors import PayloadTooLarge, ServiceUnavailable, ValidationFailed
from arcana.queue.types import Enqueued, Job, JobSpec, Lease, Priority, QueueBackend, QueueStats

Clock = Callable[[], float]


class JobQueue:
    def __init__(self, config: QueueConfig, backend: QueueBackend, clock: Clock = time.time) -> None:
        self.config = config
        self.backend = backend
        self.clock = clock
        # (when read, jobs waiting or running): the depth bound's view of the backend, counting our own
        # enqueues until the next read.
        self._depth: tuple[float, int] | None = None
        self._depth_lock = threading.Lock()
        # Called (on the enqueuing thread) after every enqueue that stored something: this process's
        # worker looks for work at once instead of at its next poll.
        self._listeners: list[Callable[[], None]] = []

    def on_enqueued(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each enqueue that stored a job; returns what removes it again."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _enqueued(self, created: bool) -> None:
        if created:
            for listener in list(self._listeners):
                listener()

    def spec(
        self,
        job_type: str,
        payload: Any = None,
        *,
        priority: Priority | str = Priority.NORMAL,
        delay_ms: int = 0,
        run_at: float | None = None,
        max_retries: int | None = None,
        dedupe_key: str | None = None,
        owner: str,
        target: str = "",
        traceparent: str = "",
    ) -> JobSpec:
        """A checked JobSpec, or ValidationFailed / PayloadTooLarge naming the field."""
        c = self.config
        if isinstance(priority, str):
            try:
                priority = Priority.parse(priority)
            except ValueError as exc:
                raise ValidationFailed(f"priority: {exc}") from None
        if not isinstance(delay_ms, int) or isinstance(delay_ms, bool) or delay_ms < 0:
            raise ValidationFailed("delay_ms must be a non-negative integer")
        if delay_ms > c.max_delay_s * 1000:
            raise ValidationFailed(f"delay_ms must be at most {c.max_delay_s * 1000} (queue.max_delay_s)")
        now = self.clock()
        if run_at is not None:
            if delay_ms:
                raise ValidationFailed("give delay_ms or run_at, not both")
            if run_at > now + c.max_delay_s:
                raise ValidationFailed(f"run_at is more than {c.max_delay_s} s ahead (queue.max_delay_s)")
        elif delay_ms:
            run_at = now + delay_ms / 1000
        retries = c.default_max_retries if max_retries is None else max_retries
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= c.max_retries_limit:
            raise ValidationFailed(f"max_retries must be an integer 0-{c.max_retries_limit}")
        if dedupe_key is not None and not (0 < len(dedupe_key.encode()) <= c.max_dedupe_key_bytes):
            raise ValidationFailed(f"dedupe_key must be 1-{c.max_dedupe_key_bytes} bytes")
        try:
            size = len(jsonio.encode(payload))
        except jsonio.JsonRejected as exc:
            raise ValidationFailed(f"payload: {exc}") from None
        if size > c.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {size} bytes; the limit is {c.max_payload_bytes} (queue.max_payload_bytes)"
            )
        return JobSpec(job_type, payload, priority, run_at, retries, dedupe_key, owner, target, traceparent)

    def enqueue(self, spec: JobSpec) -> Enqueued:
        self._room_for(1)
        done = self.backend.enqueue(spec, self.clock())
        self._enqueued(done.created)
        return done

    def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Enqueued]:
        if not specs:
            return []
        self._room_for(len(specs))
        done = self.backend.enqueue_many(specs, self.clock())
        self._enqueued(any(e.created for e in done))
        return done

    def _room_for(self, adding: int) -> None:
        """Refuse (503) an enqueue that would take the queue past ``queue.max_depth`` jobs waiting or running."""
        limit = self.config.max_depth
        if not limit:
            return
        with self._depth_lock:
            now = self.clock()
            if self._depth is None or not 0 <= now - self._depth[0] < self.config.depth_check_s:
                stats = self.backend.stats(now)
                self._depth = (now, sum(stats.ready.values()) + stats.delayed + stats.running)
            read_at, depth = self._depth
            if depth + adding > limit:
                raise ServiceUnavailable(
                    f"the job queue is full ({depth} jobs waiting or running; queue.max_depth is {limit})",
                    retry_after=max(1, math.ceil(self.config.depth_check_s)),
                )
            self._depth = (read_at, depth + adding)

    def get(self, job_id: str) -> Job | None:
        return self.backend.get(job_id)

    def stats(self) -> QueueStats:
        return self.backend.stats(self.clock())

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        return self.backend.dead(limit, offset)

    def replay(self, ids: Sequence[str] | None) -> int:
        return self.backend.replay(ids, self.clock())

    def purge(self, ids: Sequence[str] | None) -> int:
        return self.backend.purge(ids)

    def close(self) -> None:
        self.backend.close()


__all__ = ["JobQueue", "Lease"]
