"""SAQ on Redis, default settings apart from the worker's concurrency."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from queue_baselines.tally import Tally

_tally: Tally | None = None


async def noop(ctx: Any) -> None:
    assert _tally is not None
    _tally.hit()


def _queue(url: str, prefix: str) -> Any:
    from saq import Queue

    return Queue.from_url(url, name=prefix)


async def _enqueue(url: str, prefix: str, n: int) -> float:
    queue = _queue(url, prefix)
    await queue.connect()
    t0 = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("noop")
    took = time.perf_counter() - t0
    await queue.disconnect()
    return took


def enqueue(url: str, prefix: str, n: int) -> float:
    return asyncio.run(_enqueue(url, prefix, n))


async def _work(url: str, prefix: str, concurrency: int) -> None:
    from saq import Worker

    queue = _queue(url, prefix)
    await queue.connect()
    await Worker(queue, functions=[noop], concurrency=concurrency).start()


def work(url: str, prefix: str, concurrency: int, tally: Tally) -> None:
    global _tally
    _tally = tally
    asyncio.run(_work(url, prefix, concurrency))
