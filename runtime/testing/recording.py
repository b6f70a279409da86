"""What a plugin did besides answering: the jobs it enqueued, the events it emitted, the lines it logged.

Each recorder watches the kernel's real part, never a stand-in: the queue
backend the kernel's ``JobQueue`` stores into (wrapped, every call passed
on), the kernel's event bus (an in-process listener, as any kernel part
subscribes), and the ``arcana.plugin`` logger the ``log`` capability writes
to. Plugin calls run on the plugin's own threads, so each recorder takes a
lock around its list.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from arcana.queue.types import Enqueued, Job, JobSpec, Lease, QueueBackend, QueueStats

# The log capability's logger (arcana_host.log).
PLUGIN_LOGGER = "arcana.plugin"


@dataclass(frozen=True)
class EnqueuedJob:
    """A job the plugin enqueued with ``queue_enqueue``, as the queue holds it now."""

    type: str
    payload: Any
    priority: str  # critical | high | normal | low
    id: str
    state: str  # queued | failed (waiting for a retry) | ...
    run_at: float  # seconds since the epoch: later than now for a delayed job
    max_retries: int
    attempts: int
    # As stored: the plugin's key namespaced by the kernel ("plugin:<name>:<key>"), or None.
    dedupe_key: str | None = None

    @classmethod
    def of(cls, job: Job) -> EnqueuedJob:
        return cls(
            job.type,
            job.payload,
            job.priority.label,
            job.id,
            job.state.value,
            job.run_at,
            job.max_retries,
            job.attempts,
            job.dedupe_key,
        )


@dataclass(frozen=True)
class EmittedEvent:
    """An event the plugin emitted with ``event_emit``, as the bus made it."""

    topic: str
    payload: dict[str, Any]
    principal: str | None = None  # the calling request's user (its ``sub``), or None
    id: str = ""
    source: str = ""  # the plugin's name


@dataclass(frozen=True)
class LogRecord:
    """One line the plugin logged: level (debug | info | warning | error), message, its fields."""

    level: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


class RecordingQueueBackend:
    """The kernel's queue backend, every call passed on; remembers the ids of jobs ``owner`` enqueued itself.

    Event deliveries (jobs with a ``target``) are the bus's, not the plugin's: they are not recorded.
    """

    def __init__(self, backend: QueueBackend, owner: str) -> None:
        self.inner = backend
        self.owner = owner
        self._ids: list[str] = []
        self._lock = threading.Lock()

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()

    def _record(self, specs: Sequence[JobSpec], done: Sequence[Enqueued]) -> None:
        with self._lock:
            for spec, enqueued in zip(specs, done, strict=True):
                if enqueued.created and spec.owner == self.owner and not spec.target:
                    self._ids.append(enqueued.id)

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        done = self.inner.enqueue(spec, now)
        self._record([spec], [done])
        return done

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        done = self.inner.enqueue_many(specs, now)
        self._record(specs, done)
        return done

    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        return self.inner.claim(worker, limit, now, lease_s, fair)

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        return self.inner.extend(leases, now, lease_s)

    def complete(self, lease: Lease, result: Any, now: float) -> bool:
        return self.inner.complete(lease, result, now)

    def complete_many(self, done: Sequence[tuple[Lease, Any]], now: float) -> list[bool]:
        return self.inner.complete_many(done, now)

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        return self.inner.fail(lease, error, retry_at, now)

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        return self.inner.release(lease, run_at, now, error)

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        return self.inner.bury(lease, error, now)

    def get(self, job_id: str) -> Job | None:
        return self.inner.get(job_id)

    def stats(self, now: float) -> QueueStats:
        return self.inner.stats(now)

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        return self.inner.dead(limit, offset)

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        return self.inner.replay(ids, now)

    def purge(self, ids: Sequence[str] | None) -> int:
        return self.inner.purge(ids)

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        return self.inner.tick(key, tick, spec, now)

    def sweep(self, now: float, retention_s: float) -> int:
        return self.inner.sweep(now, retention_s)

    def close(self) -> None:
        self.inner.close()


class EventRecorder:
    """A listener on the kernel's event bus: keeps the events whose source is ``plugin``."""

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self._events: list[EmittedEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("source") != self.plugin:
            return
        principal = event.get("principal")
        emitted = EmittedEvent(
            str(event["topic"]),
            dict(event.get("payload") or {}),
            principal if isinstance(principal, str) else None,
            str(event.get("id", "")),
            self.plugin,
        )
        with self._lock:
            self._events.append(emitted)

    def events(self) -> list[EmittedEvent]:
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._events.clear()


class LogRecorder(logging.Handler):
    """A handler on the ``arcana.plugin`` logger keeping ``plugin``'s lines, at every level while attached.

    Lines are told apart by plugin name: two harnesses of the same plugin open at once see each other's lines.
    """

    # The logger's own level while no recorder is attached; recorders attach and detach in any order.
    _attached = 0
    _saved_level = logging.NOTSET
    _class_lock = threading.Lock()

    def __init__(self, plugin: str) -> None:
        super().__init__(logging.DEBUG)
        self.plugin = plugin
        self._records: list[LogRecord] = []
        self._logger = logging.getLogger(PLUGIN_LOGGER)
        self._is_attached = False

    def attach(self) -> None:
        with LogRecorder._class_lock:
            if self._is_attached:
                return
            if LogRecorder._attached == 0:
                # Debug lines are dropped before any handler unless the logger lets them through.
                LogRecorder._saved_level = self._logger.level
                if not self._logger.isEnabledFor(logging.DEBUG):
                    self._logger.setLevel(logging.DEBUG)
            LogRecorder._attached += 1
            self._is_attached = True
            self._logger.addHandler(self)

    def detach(self) -> None:
        with LogRecorder._class_lock:
            if not self._is_attached:
                return
            self._logger.removeHandler(self)
            self._is_attached = False
            LogRecorder._attached -= 1
            if LogRecorder._attached == 0:
                self._logger.setLevel(LogRecorder._saved_level)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "plugin", None) != self.plugin:
            return
        fields = getattr(record, "fields", None)
        line = LogRecord(
            record.levelname.lower(), record.getMessage(), dict(fields) if isinstance(fields, dict) else {}
        )
        self.acquire()
        try:
            self._records.append(line)
        finally:
            self.release()

    def records(self) -> list[LogRecord]:
        self.acquire()
        try:
            return list(self._records)
        finally:
            self.release()

    def clear(self) -> None:
        self.acquire()
        try:
            self._records.clear()
        finally:
            self.release()
