"""arq on Redis, default settings apart from the worker's concurrency (``max_jobs``).

Job ids carry the run's prefix (``_job_id``) so every key arq writes,
``arq:job:<id>`` and ``arq:result:<id>`` included, can be found and deleted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from queue_baselines.tally import Tally

_tally: Tally | None = None


async def noop(ctx: Any) -> None:
    assert _tally is not None
    _tally.hit()


async def _enqueue(url: str, prefix: str, n: int) -> float:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=prefix)
    t0 = time.perf_counter()
    for i in range(n):
        await pool.enqueue_job("noop", _job_id=f"{prefix}-{i}")
    took = time.perf_counter() - t0
    await pool.aclose()
    return took


def enqueue(url: str, prefix: str, n: int) -> float:
    return asyncio.run(_enqueue(url, prefix, n))


async def _work(url: str, prefix: str, concurrency: int) -> None:
    from arq import Worker
    from arq.connections import RedisSettings

    worker = Worker(
        functions=[noop],  # type: ignore[list-item]
        redis_settings=RedisSettings.from_dsn(url),
        queue_name=prefix,
        health_check_key=f"{prefix}:health-check",
        max_jobs=concurrency,
        handle_signals=False,
    )
    await worker.async_run()


def work(url: str, prefix: str, concurrency: int, tally: Tally) -> None:
    global _tally
    _tally = tally
    asyncio.run(_work(url, prefix, concurrency))
