"""What a worker does with an attempt that did not succeed: retry it later, or give up.

Pure functions of the job, the clock and the ``queue`` config; the random
source is a parameter so a test pins the jitter. The backend only records
what is decided here (see ``arcana.queue.types``).

Retry ``n`` (the n-th attempt after the first) waits
``min(backoff_max_ms, backoff_base_ms * 2**(n-1))`` less a random fraction,
up to ``backoff_jitter``, of that wait: jitter only ever shortens it, so the
configured maximum is a true maximum, and jobs that failed together spread
out instead of retrying in lock-step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from arcana.config import QueueConfig
from arcana.queue.types import Job

# A float in [0, 1); random.random by default.
Random = Callable[[], float]
# 2**62 ms is far past any backoff_max_ms: larger exponents only risk huge integers.
MAX_EXPONENT = 62


def backoff_s(retry: int, config: QueueConfig, rand: Random = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
    exponent = min(max(retry, 1) - 1, MAX_EXPONENT)
    wait_ms = min(config.backoff_max_ms, config.backoff_base_ms << exponent)
    return wait_ms * (1 - config.backoff_jitter * rand()) / 1000


def retry_at(job: Job, now: float, config: QueueConfig, rand: Random = random.random) -> float | None:
    """When a job whose attempt just failed runs again; None when it is out of retries (dead).

    ``job.attempts`` counts the attempt that failed, so attempt n leads to
    retry n while n <= max_retries: max_retries 3 gives four attempts in all.
    """
    if job.attempts > job.max_retries:
        return None
    return now + backoff_s(job.attempts, config, rand)


def unrouted_run_at(job: Job, now: float, config: QueueConfig) -> float | None:
    """When to look again for a plugin serving a job no loaded plugin serves; None once it waited too long.

    The wait is counted from the job's creation: a job that nothing could
    run for ``unrouted_dead_after_s`` goes to the dead-letter queue, where
    an operator can replay it once the plugin is back.
    """
    if now - job.created_at >= config.unrouted_dead_after_s:
        return None
    return now + config.unrouted_retry_ms / 1000
