"""Claim-until-empty loops for the concurrency tests, importable by a spawned process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.queue.types import QueueBackend

# Fixed: no lease runs out during the test, so a job handed out twice is a double claim.
NOW, LEASE_S, BATCH = 1_800_000_000.0, 600.0, 16


def claim_until_empty(backend: QueueBackend, worker: str) -> list[str]:
    """Claim batches until a claim comes back empty: the ids this worker was handed.

    The jobs are left running: completing them would only add a commit per
    job, and with leases that never run out nothing can hand them out again.
    """
    claimed: list[str] = []
    while leases := backend.claim(worker, BATCH, NOW, LEASE_S):
        claimed.extend(lease.job.id for lease in leases)
    return claimed


def process_main(url: str, worker: str, threads: int, start: Barrier, results: Queue[list[str]]) -> None:
    """A worker process of its own: its own engine on the same database, ``threads`` claimers.

    It waits at ``start`` once it is ready, so that it competes with the
    other claimers instead of arriving after they emptied the queue.
    """
    from arcana.queue.sql_backend import SqlQueueBackend

    db = Database(DatabaseConfig(url=url))
    try:
        backend = SqlQueueBackend(db.engine)
        with ThreadPoolExecutor(threads) as pool:
            start.wait()
            runs = list(pool.map(lambda n: claim_until_empty(backend, f"{worker}.{n}"), range(threads)))
        results.put([job_id for run in runs for job_id in run])
    finally:
        db.close()
