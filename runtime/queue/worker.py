"""The worker: claims jobs from the queue backend and runs each as a plugin call, on the kernel's event loop.

One ``Worker`` per process. It claims in batches up to its free concurrency
(one claim in every ``queue.fair_every`` is a fair claim: the anti-starvation
rule), runs each job through ``arcana.queue.dispatch`` on the snapshot
current when the job starts, and records the outcome: ``{}`` or a result
completes the job; a plugin error, trap, timeout or malformed answer is a
failed attempt, retried with backoff (``arcana.queue.policy``) or dead; a job
refused by the plugin's open circuit breaker was not run, so it is put back
for after the breaker's Retry-After without counting the attempt; a job
no loaded plugin serves is put back to wait, and dead-lettered once it waited
too long. Running jobs' leases are extended every third of ``queue.lease_s``,
so only a worker that died (or stalled) loses its jobs to another one.

Backend calls block, so they run on a small executor of the worker's own:
a slow backend then holds the worker's threads, never the kernel's. A
backend outage (``ServiceUnavailable``) is logged once and waited out with a
growing pause; the worker keeps going. ``stop`` is graceful: no new claims,
running jobs get ``queue.shutdown_grace_s`` to finish, the rest are
cancelled and released for another worker without counting the attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from arcana import logs
from arcana.config import QueueConfig
from arcana.errors import ArcanaError, CircuitOpen, ServiceUnavailable
from arcana.queue import policy
from arcana.queue.dispatch import Kind, deliver, kind_of, route
from arcana.queue.metrics import JOB_OUTCOMES, JOB_SECONDS
from arcana.queue.types import Lease, QueueBackend
from arcana.registry import Registry
from arcana.tracing import Tracing

logger = logging.getLogger("arcana.queue.worker")
T = TypeVar("T")
LeaseKey = tuple[str, str]
# Finished jobs past queue.retention_s are swept this often (by every worker: sweeping is idempotent).
SWEEP_EVERY_S = 60.0
# The longest pause between tries while the backend is down.
MAX_OUTAGE_PAUSE_S = 5.0
# An outcome the backend could not take is tried again for at most this share of the lease.
RECORD_PATIENCE = 0.5
# A stored error message is cut to this many characters (it comes from the plugin).
MAX_ERROR_CHARS = 2000
# A job deferred by an open breaker comes back after its Retry-After plus up to this fraction more.
CIRCUIT_SPREAD = 0.5


def worker_name() -> str:
    """host:pid:random, unique per process start (the backend records who holds a lease)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def describe(exc: ArcanaError) -> str:
    """The error kept on a failed job: code, message and (for the operator) the detail, bounded."""
    text = f"{exc.code.value}: {exc.message}" + (f" ({exc.detail})" if exc.detail else "")
    return text[:MAX_ERROR_CHARS]


class Outage:
    """Pauses between tries while the backend is down, doubling up to a ceiling; logs each outage once."""

    def __init__(self, first_s: float) -> None:
        self._first_s = first_s
        self._pause_s = 0.0

    def failed(self, exc: Exception) -> float:
        if not self._pause_s:
            logger.warning("queue backend unavailable, retrying: %s", exc)
        self._pause_s = min(max(self._pause_s * 2, self._first_s), MAX_OUTAGE_PAUSE_S)
        return self._pause_s

    def recovered(self) -> None:
        if self._pause_s:
            logger.info("queue backend reachable again")
        self._pause_s = 0.0


class Worker:
    def __init__(
        self,
        config: QueueConfig,
        backend: QueueBackend,
        registry: Registry,
        *,
        concurrency: int | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
        rand: policy.Random = random.random,
        sweep_every_s: float = SWEEP_EVERY_S,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.registry = registry
        self.concurrency = concurrency or config.worker_concurrency
        self.name = name or worker_name()
        self.clock = clock
        self._rand = rand
        self._sweep_every_s = sweep_every_s
        # Each job a span continuing its enqueuer's trace (None: tracing off).
        self.tracing = tracing
        # By (job id, lease token): a job this worker stalled on, lost and claimed again is a second entry.
        self._running: dict[LeaseKey, tuple[Lease, asyncio.Task[None]]] = {}
        # Leases whose outcome is being recorded: shutdown waits for these instead of cancelling them.
        self._recording: set[LeaseKey] = set()
        self._freed = asyncio.Event()
        self._nudged = asyncio.Event()
        self._stopping = False
        self._claims = 0
        # Outcomes this worker recorded, by outcome (logged when it stops).
        self.outcomes: Counter[str] = Counter()
        self._threads = ThreadPoolExecutor(self.concurrency + 2, thread_name_prefix="arcana-queue")
        self._completions = Completions(lambda done: self._call(self.backend.complete_many, done, self.clock()))

    @property
    def running(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once running jobs are finished or released."""
        self._stopping = True
        self._freed.set()
        self._nudged.set()

    def wake(self) -> None:
        """Look for work now instead of at the next poll (something was just enqueued)."""
        self._nudged.set()

    async def run(self) -> None:
        """Claim and run jobs until ``stop``."""
        logger.info("worker started", extra={"worker": self.name, "concurrency": self.concurrency})
        helpers = [asyncio.create_task(self._extend_leases()), asyncio.create_task(self._sweep())]
        try:
            await self._claim_loop()
        finally:
            await self._drain()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._threads.shutdown(wait=False)
            logger.info("worker stopped", extra={"worker": self.name, "outcomes": dict(self.outcomes)})

    # ---------------------------------------------------------------- claiming

    async def _claim_loop(self) -> None:
        outage = Outage(self.config.poll_interval_ms / 1000)
        while not self._stopping:
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._freed.clear()
                await self._freed.wait()
                await asyncio.sleep(0)  # let the other jobs finishing now free their slots too: fewer, bigger claims
                continue
            self._nudged.clear()  # a wake from now on cuts the next pause short
            try:
                leases = await self._call(
                    self.backend.claim, self.name, free, self.clock(), self.config.lease_s, self._fair()
                )
            except ServiceUnavailable as exc:
                await self._pause(outage.failed(exc))
                continue
            except Exception as exc:  # a backend bug: logged with its trace; the worker outlives it
                logger.error("claiming jobs failed", exc_info=exc)
                await self._pause(outage.failed(exc))
                continue
            outage.recovered()
            for lease in leases:
                self._start(lease)
            if len(leases) < free:
                await self._pause(self.config.poll_interval_ms / 1000)

    def _fair(self) -> bool:
        every = self.config.fair_every
        self._claims += 1
        return every > 0 and self._claims % every == 0

    async def _pause(self, seconds: float) -> None:
        """Sleep, cut short by ``wake`` or ``stop``."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudged.wait(), seconds)

    def _start(self, lease: Lease) -> None:
        task = asyncio.create_task(self._run_job(lease), name=f"job-{lease.job.id}")
        self._running[_key(lease)] = (lease, task)
        task.add_done_callback(functools.partial(self._finished, lease))

    def _finished(self, lease: Lease, task: asyncio.Task[None]) -> None:
        self._running.pop(_key(lease), None)
        self._freed.set()
        if not task.cancelled() and task.exception() is not None:  # a bug: log it, the lease runs out
            logger.error("job task failed", exc_info=task.exception(), extra=_about(lease))

    # ---------------------------------------------------------------- one job

    async def _run_job(self, lease: Lease) -> None:
        job, kind = lease.job, kind_of(lease.job)
        delivery = route(self.registry.snapshot, job)
        if delivery is None:
            await self._unrouted(lease, kind)
            return
        started = time.perf_counter()
        try:
            result = await deliver(delivery, job, self.config.max_payload_bytes, self.tracing)
        except CircuitOpen as exc:
            await self._circuit_open(lease, kind, exc)
            return
        except ArcanaError as exc:
            JOB_SECONDS.labels(kind).observe(time.perf_counter() - started)
            await self._failed(lease, kind, describe(exc))
            return
        except Exception as exc:  # a kernel bug: logged with its trace, and the attempt counts as failed
            logger.error("job attempt raised", exc_info=exc, extra=_about(lease))
            await self._failed(lease, kind, "INTERNAL: internal error")
            return
        JOB_SECONDS.labels(kind).observe(time.perf_counter() - started)
        await self._record(lease, kind, "succeeded", functools.partial(self._completions.complete, lease, result))

    async def _failed(self, lease: Lease, kind: Kind, error: str) -> None:
        now = self.clock()
        at = policy.retry_at(lease.job, now, self.config, self._rand)
        extra = {**_about(lease), "error": error}
        if at is None:
            logger.error("job dead after %d attempts", lease.job.attempts, extra=extra)
            await self._record(lease, kind, "dead", self._backend_call(self.backend.fail, lease, error, None, now))
        else:
            logger.warning("job attempt failed; retry in %.1f s", at - now, extra=extra)
            await self._record(lease, kind, "retried", self._backend_call(self.backend.fail, lease, error, at, now))

    async def _circuit_open(self, lease: Lease, kind: Kind, exc: CircuitOpen) -> None:
        """The plugin's breaker is open: the handler was not called, so the attempt does not count.

        The job is put back for when the breaker lets a probe through (its
        Retry-After, spread a little so deferred jobs do not all come back at
        once); a broken plugin still fails it there, through the breaker's probes.
        """
        now = self.clock()
        at = now + (exc.retry_after or 1) * (1 + CIRCUIT_SPREAD * self._rand())
        logger.info("job deferred: %s", exc.message, extra=_about(lease))
        deferred = self._backend_call(self.backend.release, lease, at, now, exc.message)
        await self._record(lease, kind, "deferred", deferred)

    async def _unrouted(self, lease: Lease, kind: Kind) -> None:
        job, now = lease.job, self.clock()
        what = f"plugin handler {job.target}" if job.target else f"plugin serving job type {job.type}"
        at = policy.unrouted_run_at(job, now, self.config)
        if at is None:
            error = f"no loaded {what} within {self.config.unrouted_dead_after_s} s (queue.unrouted_dead_after_s)"
            logger.error("job dead: %s", error, extra=_about(lease))
            await self._record(lease, kind, "dead", self._backend_call(self.backend.bury, lease, error, now))
        else:
            logger.debug("job waits for a %s", what, extra=_about(lease))
            unrouted = self._backend_call(self.backend.release, lease, at, now, f"no loaded {what}")
            await self._record(lease, kind, "unrouted", unrouted)

    def _backend_call(self, fn: Callable[..., bool], *args: Any) -> Callable[[], Awaitable[bool]]:
        return functools.partial(self._call, fn, *args)

    async def _record(self, lease: Lease, kind: Kind, outcome: str, attempt: Callable[[], Awaitable[bool]]) -> None:
        """Hand an outcome to the backend (``attempt``), retrying through a short outage; then count it."""
        key = _key(lease)
        self._recording.add(key)
        give_up = time.monotonic() + self.config.lease_s * RECORD_PATIENCE
        outage = Outage(0.05)
        try:
            while True:
                try:
                    held = await attempt()
                    break
                except ServiceUnavailable as exc:
                    if time.monotonic() >= give_up:
                        logger.error("job outcome %s not recorded (%s); it runs again after its lease", outcome, exc)
                        return
                    await asyncio.sleep(outage.failed(exc))
        finally:
            self._recording.discard(key)
        if held:
            self._count(kind, outcome)
        else:
            logger.warning("job outcome %s refused: the lease was lost to another worker", outcome, extra=_about(lease))

    # ---------------------------------------------------------------- helpers running beside the claims

    async def _extend_leases(self) -> None:
        every_s = self.config.lease_s / 3
        while True:
            await asyncio.sleep(every_s)
            leases = [lease for lease, _task in self._running.values()]
            if not leases:
                continue
            try:
                held = await self._call(self.backend.extend, leases, self.clock(), self.config.lease_s)
            except ServiceUnavailable as exc:  # the next round tries again; a lease that runs out is redelivered
                logger.warning("could not extend job leases: %s", exc)
                continue
            except Exception as exc:  # a backend bug: logged with its trace; extending goes on
                logger.error("extending job leases failed", exc_info=exc)
                continue
            for lease, ok in zip(leases, held, strict=True):
                if not ok and _key(lease) in self._running and _key(lease) not in self._recording:
                    logger.warning("job lease lost while running; another worker may run it", extra=_about(lease))

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every_s)
            try:
                swept = await self._call(self.backend.sweep, self.clock(), self.config.retention_s)
            except ServiceUnavailable as exc:
                logger.warning("could not sweep finished jobs: %s", exc)
                continue
            except Exception as exc:  # a backend bug: logged with its trace; sweeping goes on
                logger.error("sweeping finished jobs failed", exc_info=exc)
                continue
            if swept:
                logger.info("swept %d finished jobs past their retention", swept)

    async def _drain(self) -> None:
        """Running jobs get the grace period; the rest are cancelled and released for another worker."""
        if not self._running:
            return
        tasks = {task: lease for lease, task in self._running.values()}
        _done, late = await asyncio.wait(list(tasks), timeout=self.config.shutdown_grace_s)
        cut = [task for task in late if _key(tasks[task]) not in self._recording]
        for task in cut:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for task in cut:
            if task.cancelled():
                await self._release(tasks[task])

    async def _release(self, lease: Lease) -> None:
        now = self.clock()
        try:
            held = await self._call(self.backend.release, lease, now, now, "worker shut down")
        except ServiceUnavailable as exc:  # its lease runs out and another worker takes it
            logger.warning("could not release job on shutdown: %s", exc, extra=_about(lease))
            return
        if held:
            self._count(kind_of(lease.job), "released")

    def _count(self, kind: Kind, outcome: str) -> None:
        self.outcomes[outcome] += 1
        JOB_OUTCOMES.labels(kind, outcome).inc()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, functools.partial(fn, *args))


class Completions:
    """Succeeded jobs recorded in batches: those finishing while a batch is in flight go in the next one.

    A completion is most of a job's cost on the backend (a Redis round trip,
    a SQLite commit); jobs finishing together share one. Nothing waits to fill
    a batch: a lone completion goes at once, so latency stays as it was.
    """

    def __init__(self, record: Callable[[list[tuple[Lease, Any]]], Awaitable[list[bool]]]) -> None:
        self._record = record
        self._pending: list[tuple[Lease, Any, asyncio.Future[bool]]] = []
        self._flushing = False

    async def complete(self, lease: Lease, result: Any) -> bool:
        """True once the backend recorded it; False when the lease was lost; raises what the backend raised."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((lease, result, done))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await done

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    held = await self._record([(lease, result) for lease, result, _ in batch])
                except Exception as exc:  # noqa: BLE001  handed to each waiter, whose _record retries or logs it
                    for _lease, _result, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                for (_lease, _result, done), ok in zip(batch, held, strict=True):
                    if not done.done():
                        done.set_result(ok)
        finally:
            self._flushing = False


def _key(lease: Lease) -> LeaseKey:
    return lease.job.id, lease.token


def _about(lease: Lease) -> dict[str, Any]:
    job = lease.job
    about = {"job_id": job.id, "job_type": job.type, "attempt": job.attempts, "target": job.target or None}
    return about | {"trace_id": logs.trace_id(job.traceparent) or None}
