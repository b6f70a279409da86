"""The scheduler: enqueues the job of every due ``[[schedule]]`` tick of the loaded plugins, once.

Every ``queue.schedule_interval_ms`` it takes the latest due tick of each
schedule and hands it to ``backend.tick``, which records a tick only when it
is newer than the last one recorded for the schedule's key and enqueues in
the same atomic step. Hence:

* several schedulers (one per worker process, on many nodes) enqueue each
  tick once, and the job's dedupe key (``schedule:<key>:<tick>``) guards it
  again;
* a tick missed while no scheduler ran is enqueued once, on the next pass,
  not once per missed tick (only the latest due tick is offered);
* a new schedule, or a changed one (its key holds its index, job and timing),
  starts at its next tick.

It runs wherever workers run (``--role worker`` or ``all``)::

    scheduler = Scheduler(jobs, lambda: kernel.registry.snapshot)
    scheduler.start()          # on the event loop
    ...
    await scheduler.stop()

The backend is called off the loop; an outage is logged (once, and once
again when it is over) and retried on the next pass, never ending the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from arcana.errors import PayloadTooLarge, ServiceUnavailable, ValidationFailed
from arcana.manifest import Manifest, Schedule
from arcana.queue.cron import CronError, Timing
from arcana.queue.jobs import JobQueue
from arcana.queue.types import Enqueued, JobSpec

logger = logging.getLogger("arcana.queue.scheduler")
# Longer keys are shortened to plugin/index:<digest>: backends store keys in bounded columns, and the
# dedupe key built from one must stay under queue.max_dedupe_key_bytes.
MAX_KEY_BYTES = 160


class _Loaded(Protocol):
    @property
    def manifest(self) -> Manifest: ...


class _Snapshot(Protocol):
    """What the scheduler reads of a registry snapshot (``arcana.registry.Snapshot``)."""

    @property
    def plugins(self) -> Mapping[str, _Loaded]: ...


@dataclasses.dataclass(frozen=True)
class _Planned:
    key: str
    timing: Timing
    # Checked once per snapshot against the queue's bounds; each tick adds its dedupe key.
    spec: JobSpec


def schedule_key(plugin: str, index: int, schedule: Schedule) -> str:
    """``notes/0:notes.reindex:*/5 * * * *``: changing the schedule changes the key."""
    key = f"{plugin}/{index}:{schedule.job}:{schedule.expression}"
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    return f"{plugin}/{index}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


class Scheduler:
    def __init__(self, jobs: JobQueue, snapshot: Callable[[], _Snapshot], interval_s: float | None = None) -> None:
        self._jobs = jobs
        self._snapshot = snapshot
        self.interval_s = jobs.config.schedule_interval_ms / 1000 if interval_s is None else interval_s
        self._plan: list[_Planned] = []
        self._planned_for: object = None
        # The last tick this scheduler handed to the backend per key: an unchanged tick needs no round trip.
        self._offered: dict[str, float] = {}
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def run_pass(self) -> list[Enqueued]:
        """One look at every schedule (blocking); the jobs this pass enqueued. ServiceUnavailable: retry later."""
        snapshot = self._snapshot()
        if snapshot is not self._planned_for:
            self._plan = self._make_plan(snapshot)
            self._planned_for = snapshot
            keys = {p.key for p in self._plan}
            self._offered = {k: t for k, t in self._offered.items() if k in keys}
        now = self._jobs.clock()
        enqueued = []
        for planned in self._plan:
            result = self._offer(planned, now)
            if result is not None and result.created:
                enqueued.append(result)
        return enqueued

    def _offer(self, planned: _Planned, now: float) -> Enqueued | None:
        try:
            tick = planned.timing.latest_at_or_before(now)
        except CronError as exc:  # parsed, yet no tick found: nothing to do but say so
            logger.error("schedule %s: %s", planned.key, exc)
            return None
        if self._offered.get(planned.key) == tick:
            return None
        spec = dataclasses.replace(planned.spec, dedupe_key=f"schedule:{planned.key}:{int(tick)}")
        result = self._jobs.backend.tick(planned.key, tick, spec, now)
        self._offered[planned.key] = tick
        if result is not None and result.created:
            logger.info("schedule tick enqueued", extra={"schedule": planned.key, "tick": tick, "job_id": result.id})
        return result

    def _make_plan(self, snapshot: _Snapshot) -> list[_Planned]:
        plan = []
        for loaded in snapshot.plugins.values():
            manifest = loaded.manifest
            for index, schedule in enumerate(manifest.schedules):
                key = schedule_key(manifest.name, index, schedule)
                try:
                    spec = self._jobs.spec(
                        schedule.job, schedule.payload, priority=schedule.priority, owner=manifest.name
                    )
                except (
                    ValidationFailed,
                    PayloadTooLarge,
                ) as exc:  # the operator's bounds refuse the manifest's payload
                    logger.error("schedule %s skipped: %s", key, exc.message, extra={"plugin": manifest.name})
                    continue
                plan.append(_Planned(key, schedule.timing, spec))
        return plan

    def start(self) -> None:
        """Run passes every ``interval_s`` on the running event loop until ``stop``."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="arcana-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await self._pass()
            await asyncio.sleep(self.interval_s)

    async def _pass(self) -> None:
        try:
            await asyncio.to_thread(self.run_pass)
        except ServiceUnavailable as exc:
            if not self._failing:
                logger.warning("scheduler: the queue is unavailable, retrying every %g s: %s", self.interval_s, exc)
            self._failing = True
            return
        except Exception:  # a bug in one pass must not end scheduling; the next pass retries
            logger.exception("scheduler pass failed; retrying in %g s", self.interval_s)
            return
        if self._failing:
            logger.info("scheduler: the queue is available again")
            self._failing = False
