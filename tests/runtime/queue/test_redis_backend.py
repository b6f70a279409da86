"""What only the Redis backend can get wrong: atomicity under real concurrency, its keys, its failures.

The queue's semantics are pinned by the contract suite (``test_contract.py``),
which runs against this backend too. These tests need Redis on
127.0.0.1:6379: without it they skip loudly, and fail when CI=true.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from arcana.config import QueueConfig
from arcana.errors import ServiceUnavailable
from arcana.queue import redis_backend
from arcana.queue.redis_backend import RedisQueueBackend
from arcana.queue.types import Job, JobSpec, JobState, Lease, Priority
from database_fixtures import REDIS_URL, connect_redis

# The key-layout test looks at a whole database, so it uses one the other tests leave alone.
KEYCHECK_URL = "redis://127.0.0.1:6379/13"
KEYCHECK_PREFIX = "arcana-keycheck-"
NOW = 1_700_000_000.0


def _delete_prefix(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = connect_redis(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    prefix = f"arcana-test-{uuid.uuid4().hex}"
    yield prefix
    _delete_prefix(client, prefix)


@pytest.fixture
def backend(client: redis.Redis, prefix: str) -> RedisQueueBackend:
    return RedisQueueBackend(client, prefix)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _claim_all(backend: RedisQueueBackend, now: float, limit: int = 100) -> list[Lease]:
    leases: list[Lease] = []
    while batch := backend.claim("w", limit, now, 30):
        leases.extend(batch)
    return leases


def test_each_job_is_claimed_exactly_once_by_eight_threads_claiming_at_once(backend: RedisQueueBackend) -> None:
    backend.enqueue_many([JobSpec("noop", {"n": n}, Priority(n % 4)) for n in range(2000)], NOW)
    claimed: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(name: str) -> None:
        start.wait()
        while leases := backend.claim(name, 7, NOW + 1, 30):
            with lock:
                claimed.update(lease.job.id for lease in leases)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 2000
    assert set(claimed.values()) == {1}
    assert backend.stats(NOW + 1).running == 2000


@pytest.mark.parametrize(
    "operation",
    ["enqueue", "claim", "extend", "complete", "fail", "release", "get", "stats", "dead", "replay", "purge", "tick"],
)
def test_unreachable_redis_gives_service_unavailable(operation: str) -> None:
    backend = RedisQueueBackend.from_config(QueueConfig(redis_url=f"redis://127.0.0.1:{_closed_port()}/0"))
    job = Job("j", "t", None, Priority.NORMAL, JobState.RUNNING, 1, 3, NOW, NOW, NOW)
    lease = Lease(job, "token", NOW + 30)
    calls = {
        "enqueue": lambda: backend.enqueue(JobSpec("t"), NOW),
        "claim": lambda: backend.claim("w", 8, NOW, 30),
        "extend": lambda: backend.extend([lease], NOW, 30),
        "complete": lambda: backend.complete(lease, None, NOW),
        "fail": lambda: backend.fail(lease, "boom", NOW + 1, NOW),
        "release": lambda: backend.release(lease, NOW, NOW),
        "get": lambda: backend.get("j"),
        "stats": lambda: backend.stats(NOW),
        "dead": lambda: backend.dead(10),
        "replay": lambda: backend.replay(None, NOW),
        "purge": lambda: backend.purge(["j"]),
        "tick": lambda: backend.tick("s", NOW, JobSpec("t"), NOW),
    }
    with pytest.raises(ServiceUnavailable) as caught:
        calls[operation]()
    assert caught.value.retry_after == redis_backend.UNAVAILABLE_RETRY_AFTER_S
    assert isinstance(caught.value.__cause__, redis.ConnectionError)
    backend.close()


def test_callers_past_the_connection_pool_bound_get_service_unavailable(
    monkeypatch: pytest.MonkeyPatch, prefix: str
) -> None:
    monkeypatch.setattr(redis_backend, "POOL_WAIT_S", 0.05)
    backend = RedisQueueBackend.from_config(QueueConfig(redis_url=REDIS_URL, key_prefix=prefix, worker_concurrency=1))
    pool = backend._client.connection_pool
    held = [pool.get_connection() for _ in range(pool.max_connections)]
    with pytest.raises(ServiceUnavailable):
        backend.stats(NOW)
    pool.release(held.pop())
    assert backend.stats(NOW).running == 0
    for connection in held:
        pool.release(connection)
    backend.close()


def test_every_key_the_backend_writes_is_under_its_prefix() -> None:
    client = connect_redis(KEYCHECK_URL)
    prefix = f"{KEYCHECK_PREFIX}{uuid.uuid4().hex}"
    before = set(client.scan_iter(count=1000))
    try:
        backend = RedisQueueBackend(client, prefix)
        backend.enqueue_many([JobSpec("t", n, Priority(n % 4), dedupe_key=f"d{n}") for n in range(8)], NOW)
        backend.enqueue(JobSpec("later", run_at=NOW + 60), NOW)
        backend.tick("every-minute", NOW, JobSpec("s"), NOW)
        backend.tick("every-minute", NOW + 60, JobSpec("s"), NOW)
        a, b, c, d, e, _expires = backend.claim("w", 6, NOW, 30, fair=True)
        backend.extend([a], NOW, 30)
        backend.complete(a, {"ok": True}, NOW)
        backend.fail(b, "again", NOW + 5, NOW)
        backend.fail(c, "dead", None, NOW)
        backend.bury(d, "unrouted", NOW)
        backend.release(e, NOW, NOW)
        backend.claim("w", 1, NOW + 100, 30)  # reaps the last lease
        backend.replay([c.job.id], NOW)
        backend.purge(None)
        backend.sweep(NOW + 10, 1)
        backend.stats(NOW)
        backend.dead(10)
        new = {k.decode() for k in set(client.scan_iter(count=1000)) - before}
        assert new, "the backend wrote no keys at all"
        # Another run of this test may write at the same time, under its own prefix.
        outside = {k for k in new if not k.startswith(f"{prefix}:") and not k.startswith(KEYCHECK_PREFIX)}
        assert outside == set()
    finally:
        _delete_prefix(client, prefix)
        client.close()


def test_a_swept_jobs_dedupe_key_is_deleted_and_free_again(
    backend: RedisQueueBackend, client: redis.Redis, prefix: str
) -> None:
    first = backend.enqueue(JobSpec("t", dedupe_key="once"), NOW)
    (lease,) = backend.claim("w", 1, NOW, 30)
    backend.complete(lease, None, NOW)
    assert backend.sweep(NOW + 100, 10) == 1
    assert client.exists(f"{prefix}:dedupe:once") == 0
    again = backend.enqueue(JobSpec("t", dedupe_key="once"), NOW + 100)
    assert again.created and again.id != first.id


def test_a_purged_jobs_dedupe_key_is_deleted_and_free_again(
    backend: RedisQueueBackend, client: redis.Redis, prefix: str
) -> None:
    first = backend.enqueue(JobSpec("t", dedupe_key="once"), NOW)
    (lease,) = backend.claim("w", 1, NOW, 30)
    backend.fail(lease, "boom", None, NOW)
    assert backend.purge([first.id]) == 1
    assert client.exists(f"{prefix}:dedupe:once") == 0
    assert backend.enqueue(JobSpec("t", dedupe_key="once"), NOW).created


def test_times_round_trip_exactly(backend: RedisQueueBackend) -> None:
    # Lua prints numbers with 14 significant digits; the scripts must never round a time through one.
    now, run_at = 1_700_000_000.123456, 1_700_000_000.987654321
    job_id = backend.enqueue(JobSpec("t", run_at=run_at), now).id
    job = backend.get(job_id)
    assert job is not None and (job.run_at, job.created_at) == (run_at, now)
    assert backend.claim("w", 1, run_at - 1e-6, 30) == []
    (lease,) = backend.claim("w", 1, run_at, 0.000123)
    assert lease.until == run_at + 0.000123


def test_one_claim_reaps_a_bounded_number_of_expired_leases(
    backend: RedisQueueBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_backend, "REAP_PER_CLAIM", 5)
    backend.enqueue_many([JobSpec("t") for _ in range(12)], NOW)
    assert len(_claim_all(backend, NOW)) == 12
    backend.claim("w", 1, NOW + 31, 30)
    # 5 reaped, one of them leased again: the other 7 expired leases wait for the next claims.
    assert backend.stats(NOW + 31).running == 7 + 1
    assert len(_claim_all(backend, NOW + 31)) == 11


def test_enqueue_many_past_one_script_call_dedupes_across_calls(
    backend: RedisQueueBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_backend, "ENQUEUE_BATCH", 3)
    specs = [JobSpec("t", n, dedupe_key=f"k{n % 4}") for n in range(10)]
    results = backend.enqueue_many(specs, NOW)
    assert [r.created for r in results] == [True] * 4 + [False] * 6
    assert [r.id for r in results[4:]] == [results[n % 4].id for n in range(4, 10)]


def test_replay_and_purge_of_all_dead_jobs_go_past_one_script_call(
    backend: RedisQueueBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_backend, "BATCH", 3)
    backend.enqueue_many([JobSpec("t", max_retries=0) for _ in range(10)], NOW)
    for lease in _claim_all(backend, NOW):
        backend.fail(lease, "boom", None, NOW)
    assert backend.replay(None, NOW) == 10
    for lease in _claim_all(backend, NOW):
        backend.fail(lease, "boom", None, NOW)
    assert backend.purge(None) == 10
    assert backend.stats(NOW).dead == 0


def test_a_client_that_decodes_responses_works_too(prefix: str) -> None:
    text_client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    backend = RedisQueueBackend(text_client, prefix)
    job_id = backend.enqueue(JobSpec("t", {"é": [1, None]}), NOW).id
    (lease,) = backend.claim("w", 1, NOW, 30)
    assert lease.job.payload == {"é": [1, None]}
    assert backend.complete(lease, "done", NOW)
    job = backend.get(job_id)
    assert job is not None and job.result == "done"
    text_client.close()
