"""A worker over a real kernel (fake engine), an in-memory backend and a still clock: jobs run in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from arcana.config import QueueConfig
from arcana.kernel import Kernel
from arcana.queue.types import Job, JobSpec, JobState
from arcana.queue.worker import Worker
from fakes import FakePlugin, Kernels, async_wait_for, manifest_toml, write_plugin
from queue_fakes import FakeClock, MemoryQueueBackend

# Quick polls, one attempt's backoff of a round second, a real lease.
FAST = QueueConfig(poll_interval_ms=5, backoff_base_ms=1000, backoff_jitter=0.5, shutdown_grace_s=2.0)


def manifest(
    name: str,
    jobs: Mapping[str, str] | None = None,
    subscribe: Mapping[str, str] | None = None,
    version: str = "1.0.0",
    limits: Mapping[str, int] | None = None,
) -> str:
    """Manifest TOML with [[job]] (type -> handler) and [[subscribe]] (topic -> handler) entries."""
    text = manifest_toml(name, version, limits=limits)
    text += "".join(f'\n[[job]]\ntype = "{t}"\nhandler = "{h}"\n' for t, h in (jobs or {}).items())
    text += "".join(f'\n[[subscribe]]\ntopic = "{t}"\nhandler = "{h}"\n' for t, h in (subscribe or {}).items())
    return text


class Harness:
    def __init__(self, kernels: Kernels) -> None:
        self.kernels = kernels
        self.kernel: Kernel = kernels()
        self.backend = MemoryQueueBackend()
        self.clock = FakeClock()

    async def serve(self, name: str, handlers: Mapping[str, Any], key: str | None = None, **entries: Any) -> FakePlugin:
        """Install plugin ``name`` (or replace it by a build whose behaviour is ``key``) and sync the kernel."""
        plugin = self.kernels.engine.define(key or name, FakePlugin(dict(handlers)))
        write_plugin(self.kernels.plugins, manifest(name, **entries), file=name, key=key)
        await self.kernel.load_all()
        assert self.kernel.plugins_view().failures == (), self.kernel.plugins_view().failures
        return plugin

    def worker(self, config: QueueConfig = FAST, **kwargs: Any) -> Worker:
        return Worker(config, self.backend, self.kernel.registry, clock=self.clock, **kwargs)

    @contextlib.asynccontextmanager
    async def running(self, worker: Worker) -> AsyncIterator[Worker]:
        task = asyncio.create_task(worker.run())
        try:
            yield worker
        finally:
            worker.stop()
            await task

    def enqueue(self, job_type: str, payload: Any = None, **spec: Any) -> str:
        return self.backend.enqueue(JobSpec(job_type, payload, **spec), self.clock()).id

    def job(self, job_id: str) -> Job:
        job = self.backend.get(job_id)
        assert job is not None
        return job

    async def settled(
        self, job_id: str, states: Iterable[JobState], attempts: int | None = None, timeout: float = 5.0
    ) -> Job:
        """Wait until the job is in one of ``states`` (after ``attempts`` attempts, when given); return it."""
        wanted = set(states)

        def there() -> bool:
            job = self.job(job_id)
            return job.state in wanted and attempts in (None, job.attempts)

        await async_wait_for(there, timeout, f"job {job_id} never reached {sorted(wanted)} ({attempts=})")
        return self.job(job_id)


def config(**changes: Any) -> QueueConfig:
    return dataclasses.replace(FAST, **changes)
