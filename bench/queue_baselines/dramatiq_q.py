"""Dramatiq on its Redis broker, default settings (at-least-once: messages are acked after the actor returns)."""

from __future__ import annotations

import threading
import time
from typing import Any

from queue_baselines.tally import Tally

_tally: Tally | None = None


def _noop() -> None:
    assert _tally is not None
    _tally.hit()


def _actor(url: str, prefix: str) -> Any:
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=url, namespace=prefix)
    dramatiq.set_broker(broker)
    return dramatiq.actor(_noop, actor_name="noop", broker=broker)


def enqueue(url: str, prefix: str, n: int) -> float:
    actor = _actor(url, prefix)
    actor.broker.client.ping()  # connect before the clock starts
    t0 = time.perf_counter()
    for _ in range(n):
        actor.send()
    took = time.perf_counter() - t0
    actor.broker.close()
    return took


def work(url: str, prefix: str, concurrency: int, tally: Tally) -> None:
    from dramatiq import Worker

    global _tally
    _tally = tally
    actor = _actor(url, prefix)
    # One process, `concurrency` worker threads (the CLI would start one process per core).
    Worker(actor.broker, worker_threads=concurrency).start()
    threading.Event().wait()  # worker.py ends the process once every job ran
