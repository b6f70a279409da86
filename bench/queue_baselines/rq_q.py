"""RQ, default settings: one job at a time per worker; ``Worker`` forks a work horse per job, ``SimpleWorker`` not.

Job ids and the worker's name carry the run's prefix so every key RQ writes can
be found and deleted; ``cleanup_globals`` removes the run's members from RQ's
global sets.
"""

from __future__ import annotations

import time
from typing import Any

from queue_baselines.tally import Tally

_tally: Tally | None = None


def noop() -> None:
    assert _tally is not None
    _tally.hit()


def _queue(url: str, prefix: str) -> Any:
    from redis import Redis
    from rq import Queue

    return Queue(prefix, connection=Redis.from_url(url))


def enqueue(url: str, prefix: str, n: int) -> float:
    queue = _queue(url, prefix)
    queue.connection.ping()
    t0 = time.perf_counter()
    for i in range(n):
        queue.enqueue(noop, job_id=f"{prefix}-{i}")
    took = time.perf_counter() - t0
    queue.connection.close()
    return took


def work(url: str, prefix: str, concurrency: int, tally: Tally, *, fork: bool = True) -> None:
    from rq import SimpleWorker, Worker

    global _tally
    _tally = tally
    queue = _queue(url, prefix)
    cls = Worker if fork else SimpleWorker
    # RQ has no concurrency within one worker: `concurrency` cannot apply.
    cls([queue], connection=queue.connection, name=f"{prefix}-worker").work(burst=True, logging_level="WARNING")


def cleanup_globals(url: str, prefix: str) -> None:
    """RQ lists queues and workers in sets shared by every RQ user of the database."""
    from redis import Redis

    client = Redis.from_url(url)
    for key in client.scan_iter(match="rq:*", count=1000, _type="set"):
        members = [m for m in client.smembers(key) if prefix.encode() in m]
        if members:
            client.srem(key, *members)
    client.close()
