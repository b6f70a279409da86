"""Many claimers on one SQL queue: threads of one process and separate processes, each job claimed exactly once."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from arcana.database import Database
from arcana.queue.sql_backend import SqlQueueBackend
from arcana.queue.types import JobSpec, Priority

from .claimers import NOW, claim_until_empty, process_main
from .conftest import SQL_BACKENDS

JOBS, THREADS, PROCESSES, THREADS_PER_PROCESS = 2_000, 4, 2, 2


@pytest.mark.parametrize("sql_database", SQL_BACKENDS, indirect=True)
def test_concurrent_claimers_take_every_job_exactly_once(sql_database: Database) -> None:
    backend = SqlQueueBackend(sql_database.engine)
    specs = [JobSpec("t", {"n": n}, Priority(n % 4)) for n in range(JOBS)]
    enqueued = {e.id for e in backend.enqueue_many(specs, NOW)}
    assert len(enqueued) == JOBS
    url = sql_database.engine.url.render_as_string(hide_password=False)
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no engine or lock inherited mid-use
    start, results = spawn.Barrier(PROCESSES + 1), spawn.Queue()
    processes = [
        spawn.Process(target=process_main, args=(url, f"p{n}", THREADS_PER_PROCESS, start, results))
        for n in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        start.wait(timeout=60)
        with ThreadPoolExecutor(THREADS) as threads:
            runs = list(threads.map(lambda n: claim_until_empty(backend, f"t{n}"), range(THREADS)))
        runs += [results.get(timeout=60) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            process.kill()
    claims = Counter(job_id for run in runs for job_id in run)
    assert set(claims) == enqueued
    assert [job_id for job_id, count in claims.items() if count > 1] == []
    assert sum(1 for run in runs if run) > 1, "one claimer took every job: the test proved nothing"
    stats = backend.stats(NOW)
    assert (stats.running, sum(stats.ready.values())) == (JOBS, 0)
