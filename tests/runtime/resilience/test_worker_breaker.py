"""Jobs go through their plugin's breaker: a job refused by an open one waits it out without losing an attempt."""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from arcana.queue.types import JobState
from fakes import Kernels, async_wait_for, reply
from runtime.queue.worker_harness import Harness


def test_a_job_refused_by_an_open_breaker_is_put_back_for_its_retry_after_without_counting_the_attempt(
    kernels: Kernels,
) -> None:
    h = Harness(kernels)

    async def scenario() -> None:
        plugin = await h.serve("jobber", {"run": reply({})}, jobs={"t.run": "run"})
        breaker = h.kernel.registry.snapshot.plugins["jobber"].pool.breaker
        assert breaker is not None
        for _ in range(breaker.policy.failure_threshold):
            breaker.admit().failure()
        job_id = h.enqueue("t.run", max_retries=0)  # one attempt only: a counted refusal would make it dead
        before = REGISTRY.get_sample_value("arcana_jobs_total", {"kind": "job", "outcome": "deferred"}) or 0.0
        async with h.running(h.worker(rand=lambda: 0.0)):
            await async_wait_for(lambda: h.job(job_id).run_at > h.clock(), 5, "the job was put back")
        job = h.job(job_id)
        assert (job.state, job.attempts) == (JobState.QUEUED, 0)
        assert h.clock() + 1 <= job.run_at <= h.clock() + breaker.policy.cool_down_s  # its Retry-After, no spread
        assert job.error is not None and "circuit open" in job.error
        assert plugin.calls == []  # the handler never ran
        after = REGISTRY.get_sample_value("arcana_jobs_total", {"kind": "job", "outcome": "deferred"})
        assert after == before + 1

    asyncio.run(scenario())
