"""The queue's contracts: what a job is, what a backend must do, and the rules every backend follows.

Every backend (``sql_backend``, ``redis_backend``) implements ``QueueBackend``
with the same semantics, pinned by one contract suite (``tests/queue``):

* **Priorities** ``critical, high, normal, low`` are served in strict order
  (then oldest ``run_at`` first, then enqueue order), except that a claim made
  with ``fair=True`` takes the longest-waiting runnable jobs whatever their
  priority. Workers pass ``fair=True`` on one claim in every
  ``queue.fair_every``: that is the anti-starvation rule, so a steady stream of
  high jobs slows low ones down but can never stop them.
* **Runnable** means state ``queued`` or ``failed`` (an attempt failed; the
  retry waits) with ``run_at <= now``. A delayed job is ``queued`` with
  ``run_at`` in the future.
* **Leases.** ``claim`` hands out jobs as leases: state ``running``,
  ``attempts`` + 1, a fresh ``token``, ``lease_until = now + lease_s``. A lease
  whose time ran out (its worker died or stalled) is reaped by the next
  ``claim`` on any worker: with attempts left it is runnable again at once
  (the attempt it used stays counted), else it is ``dead`` with error
  ``"lease expired"``. ``extend``, ``complete``, ``fail`` and ``release``
  act only while the token is still the job's current one; a stale token
  (the job was reaped and handed to someone else) is refused with False and
  changes nothing.
* **Outcomes.** ``complete`` (or ``complete_many``) -> ``succeeded`` with its result; ``fail`` with a
  ``retry_at`` -> ``failed`` and runnable at ``retry_at``; ``fail`` without ->
  ``dead`` (the dead-letter queue). ``release`` puts a job back without
  counting the attempt (graceful shutdown, a job type no plugin serves yet).
  The worker decides between retry and dead (``arcana.queue.policy``); the
  backend only records.
* **Dedupe.** ``enqueue`` with a ``dedupe_key`` held by a job still stored
  (any state, until ``sweep`` or ``purge`` deletes it) returns that job's id
  with ``created=False`` and stores nothing.
* **Retention.** ``succeeded`` jobs are kept ``retention_s`` after they
  finish, then ``sweep`` deletes them; ``dead`` jobs stay until purged or
  replayed (``replay`` makes them ``queued`` with ``attempts = 0``).
* **Schedules.** ``tick`` enqueues the job of one schedule tick at most once
  across every scheduler sharing the backend: it records the tick only when it
  is newer than the last one recorded for that schedule key, and enqueues in
  the same atomic step. The first tick ever seen for a key is recorded
  without enqueuing (a new schedule waits for its next tick).

Times are seconds since the epoch (floats), passed in by the caller so tests
control the clock. Payloads and results are JSON values, kept as given.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class Priority(enum.IntEnum):
    """Lower is served first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Priority:
        """``"high"`` -> HIGH; ValueError naming the choices otherwise."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {text!r}; use critical, high, normal or low") from None


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    # An attempt failed; the job waits for its retry at run_at.
    FAILED = "failed"
    # Retries exhausted (or the job could not be routed in time): in the dead-letter queue.
    DEAD = "dead"


# Who enqueued a job, when it was not a plugin.
KERNEL_OWNER = "kernel"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What ``enqueue`` stores. ``run_at`` None: runnable now."""

    type: str
    payload: Any = None
    priority: Priority = Priority.NORMAL
    run_at: float | None = None
    max_retries: int = 3
    dedupe_key: str | None = None
    # The plugin that enqueued it ("kernel" for the kernel itself): queue_status only shows a plugin its own jobs.
    owner: str = KERNEL_OWNER
    # Empty for a job routed by its type to the plugin whose [[job]] declares it; "plugin/handler" for an
    # event delivery to one [[subscribe]] handler (then ``type`` is the event's topic).
    target: str = ""
    # W3C traceparent of whatever enqueued it, passed on to the handler.
    traceparent: str = ""


@dataclass(frozen=True, slots=True)
class Job:
    """A stored job, as read back."""

    id: str
    type: str
    payload: Any
    priority: Priority
    state: JobState
    attempts: int
    max_retries: int
    run_at: float
    created_at: float
    updated_at: float
    owner: str = KERNEL_OWNER
    target: str = ""
    traceparent: str = ""
    dedupe_key: str | None = None
    # The handler's result (succeeded) or the last error message (failed, dead).
    result: Any = None
    error: str | None = None
    finished_at: float | None = None

    def as_json(self) -> dict[str, Any]:
        """The operator's and queue_status's view of a job."""
        return {
            "id": self.id,
            "type": self.type,
            "state": self.state.value,
            "priority": self.priority.label,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "run_at": self.run_at,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "owner": self.owner,
            "target": self.target,
            "result": self.result,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """A claimed job: the worker holds it until ``until`` unless it extends the lease."""

    job: Job
    token: str
    until: float


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: str
    # False when a job with the same dedupe_key already existed (its id is returned).
    created: bool


@dataclass(frozen=True, slots=True)
class QueueStats:
    # Runnable now, per priority (every priority is present, 0 when empty).
    ready: dict[Priority, int] = field(default_factory=dict)
    # Queued or failed with run_at in the future.
    delayed: int = 0
    running: int = 0
    dead: int = 0
    succeeded: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ready": {p.label: self.ready.get(p, 0) for p in Priority},
            "delayed": self.delayed,
            "running": self.running,
            "dead": self.dead,
            "succeeded": self.succeeded,
        }


class QueueBackend(Protocol):
    """One queue store. Methods are blocking (call them off the event loop) and thread-safe.

    Backend failures raise ``arcana.errors.ServiceUnavailable``; nothing else
    leaves a backend.
    """

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued: ...

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        """Several jobs in one round trip (event fan-out); each deduped as ``enqueue`` would."""
        ...

    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        """Reap expired leases, then lease up to ``limit`` runnable jobs (see the module's rules)."""
        ...

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        """Push each lease's end to now + lease_s; False for a lease that is no longer held."""
        ...

    def complete(self, lease: Lease, result: Any, now: float) -> bool: ...

    def complete_many(self, done: Sequence[tuple[Lease, Any]], now: float) -> list[bool]:
        """``complete`` for each (lease, result) in one round trip (a worker's finished jobs, batched)."""
        ...

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        """``retry_at`` None: dead. Else failed, runnable again at retry_at."""
        ...

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        """Back to queued at ``run_at``, the attempt not counted; ``error`` says why (kept on the job)."""
        ...

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        """Dead at once, whatever attempts are left (a job no plugin served within queue.unrouted_dead_after_s)."""
        ...

    def get(self, job_id: str) -> Job | None: ...

    def stats(self, now: float) -> QueueStats: ...

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        """Dead jobs, most recently dead first."""
        ...

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        """Dead jobs (these ids, or all when None) queued again with attempts 0; how many."""
        ...

    def purge(self, ids: Sequence[str] | None) -> int:
        """Delete dead jobs (these ids, or all when None); how many."""
        ...

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        """Enqueue the job of schedule ``key``'s tick once across schedulers; None when not enqueued."""
        ...

    def sweep(self, now: float, retention_s: float) -> int:
        """Delete succeeded jobs that finished more than retention_s ago; how many."""
        ...

    def close(self) -> None: ...
