"""``RedisQueueBackend``: the queue on Redis, for scale-out (``queue.backend: redis``).

Each operation is one Lua script (``redis_scripts``), so it is atomic across
every worker and process and costs one round trip: a claim reaps expired
leases and leases a batch of jobs in one call, a completion is one call.
Scripts are registered once and sent by hash (EVALSHA); redis-py loads a
script again by itself when the server forgot it (a restart).

One Redis server (a primary, with replicas if you like), not Redis Cluster:
the scripts build their keys from the prefix rather than declaring them.

The caller's clock is used everywhere, never the server's ``TIME``: tests
control time, and every backend must agree on it. Redis failures of any kind
become ``ServiceUnavailable``; nothing else leaves the backend.

Example::

    backend = RedisQueueBackend.from_config(config.queue)
    backend.enqueue(JobSpec("thumbnail", {"id": 7}), now=time.time())
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.commands.core import Script

from arcana import jsonio
from arcana.config import QueueConfig
from arcana.errors import ServiceUnavailable, ValidationFailed
from arcana.queue import redis_scripts as lua
from arcana.queue.types import Enqueued, Job, JobSpec, JobState, Lease, Priority, QueueStats
from arcana.redis_client import bounded_client

logger = logging.getLogger(__name__)

# Seconds a caller should wait after Redis could not be reached.
UNAVAILABLE_RETRY_AFTER_S = 1
# Expired leases reaped per claim: bounds a claim's time in Redis after many workers died at once;
# the next claims reap the rest.
REAP_PER_CLAIM = 100
# Jobs per script call when replaying, purging or sweeping many: Redis runs one script at a time, so a
# long one would stall every worker.
BATCH = 500
# Specs per script call in enqueue_many, for the same reason.
ENQUEUE_BATCH = 200
# from_config's connection settings: a dead or unreachable server is reported within seconds.
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 5.0
POOL_WAIT_S = 5.0


class RedisQueueBackend:
    """The queue backend on one Redis server; every key starts with ``prefix`` + ``:``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        register = client.register_script
        self._enqueue = register(lua.script(lua.ENQUEUE))
        self._tick = register(lua.script(lua.TICK))
        self._claim = register(lua.script(lua.CLAIM))
        self._extend = register(lua.script(lua.EXTEND))
        self._complete = register(lua.script(lua.COMPLETE))
        self._fail = register(lua.script(lua.FAIL))
        self._release = register(lua.script(lua.RELEASE))
        self._replay = register(lua.script(lua.REPLAY))
        self._purge = register(lua.script(lua.PURGE))
        self._sweep = register(lua.script(lua.SWEEP))
        self._dead = register(lua.script(lua.DEAD))
        self._stats = register(lua.script(lua.STATS))

    @classmethod
    def from_config(cls, config: QueueConfig) -> RedisQueueBackend:
        """A backend on ``config.redis_url`` with bounded timeouts and connection pool (no I/O until first use)."""
        # Every worker slot may hold a connection (complete, extend) while the claim loop, the scheduler
        # and API requests use others; callers past the bound wait up to POOL_WAIT_S.
        client = bounded_client(
            config.redis_url,
            max_connections=config.worker_concurrency + 16,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            read_timeout_s=READ_TIMEOUT_S,
            pool_wait_s=POOL_WAIT_S,
        )
        return cls(client, config.key_prefix)

    # -- enqueue ---------------------------------------------------------------------------------

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        return self.enqueue_many([spec], now)[0]

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        # Past ENQUEUE_BATCH specs this is several scripts: a failure part way keeps the batches already
        # stored, and the caller's retry is safe where it matters (event deliveries carry dedupe keys).
        out: list[Enqueued] = []
        args = [_spec_args(spec, now) for spec in specs]
        with _unavailable("enqueue"):
            for start in range(0, len(args), ENQUEUE_BATCH):
                flat = [a for spec_args in args[start : start + ENQUEUE_BATCH] for a in spec_args]
                replies = self._run(self._enqueue, now, *flat)
                out.extend(Enqueued(_text(r[0]), bool(r[1])) for r in replies)
        return out

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        with _unavailable("schedule tick"):
            reply = self._run(self._tick, key, tick, now, *_spec_args(spec, now))
        return None if reply is None else Enqueued(_text(reply[0]), bool(reply[1]))

    # -- leases ----------------------------------------------------------------------------------

    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        if limit < 1:
            return []
        until = now + lease_s
        tokens = [os.urandom(16).hex() for _ in range(limit)]
        with _unavailable("claim"):
            replies = self._run(self._claim, now, until, limit, "1" if fair else "0", REAP_PER_CLAIM, worker, *tokens)
        leases = []
        for reply in replies:
            fields = _fields(reply)
            leases.append(Lease(_job(fields), _text(fields[b"token"]), until))
        return leases

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        if not leases:
            return []
        pairs = [x for lease in leases for x in (lease.job.id, lease.token)]
        with _unavailable("extend leases"):
            replies = self._run(self._extend, now, now + lease_s, *pairs)
        return [bool(r) for r in replies]

    def complete(self, lease: Lease, result: Any, now: float) -> bool:
        encoded = _encode(result, "result")
        with _unavailable("complete"):
            return bool(self._run(self._complete, lease.job.id, lease.token, now, encoded))

    def complete_many(self, done: Sequence[tuple[Lease, Any]], now: float) -> list[bool]:
        if not done:
            return []
        encoded = [(lease, _encode(result, "result")) for lease, result in done]
        # Each script is atomic on its own; the pipeline only saves the round trips (no MULTI needed).
        with _unavailable("complete"):
            pipe = self._client.pipeline(transaction=False)
            for lease, result in encoded:
                self._complete(args=[self._prefix, lease.job.id, lease.token, now, result], client=pipe)
            return [bool(r) for r in pipe.execute()]

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        with _unavailable("fail"):
            return bool(self._run(self._fail, lease.job.id, lease.token, now, error, _optional(retry_at)))

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        with _unavailable("release"):
            return bool(self._run(self._release, lease.job.id, lease.token, now, run_at, error or ""))

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        with _unavailable("bury"):
            return bool(self._run(self._fail, lease.job.id, lease.token, now, error, ""))

    # -- operators -------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with _unavailable("get job"):
            fields = self._client.hgetall(f"{self._prefix}:job:{job_id}")
        return _job(_fields(fields)) if fields else None

    def stats(self, now: float) -> QueueStats:
        with _unavailable("stats"):
            counts = [int(n) for n in self._run(self._stats, now)]
        ready = {p: counts[p] for p in Priority}
        return QueueStats(ready, delayed=counts[4], running=counts[5], dead=counts[6], succeeded=counts[7])

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        if limit < 1:
            return []
        with _unavailable("list dead jobs"):
            replies = self._run(self._dead, max(offset, 0), limit)
        return [_job(_fields(r)) for r in replies]

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        with _unavailable("replay"):
            return self._batched(self._replay, ids, now)

    def purge(self, ids: Sequence[str] | None) -> int:
        with _unavailable("purge"):
            return self._batched(self._purge, ids)

    def sweep(self, now: float, retention_s: float) -> int:
        total = 0
        with _unavailable("sweep"):
            while True:
                n = int(self._run(self._sweep, now - retention_s, BATCH))
                total += n
                if n < BATCH:
                    return total

    def close(self) -> None:
        self._client.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _run(self, script: Script, *args: Any) -> Any:
        return script(args=[self._prefix, *args])

    def _batched(self, script: Script, ids: Sequence[str] | None, *head: Any) -> int:
        """Run a dead-letter script over ``ids`` (or every dead job) BATCH at a time; the sum of its counts."""
        total = 0
        if ids is None:
            while True:
                n = int(self._run(script, *head, BATCH))
                total += n
                if n < BATCH:
                    return total
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), BATCH):
            total += int(self._run(script, *head, BATCH, *unique[start : start + BATCH]))
        return total


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    """Any Redis failure -> ServiceUnavailable (``raise ... from``), logged for the operator."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        logger.warning("job queue: %s: Redis unavailable: %s", what, exc)
        raise ServiceUnavailable(
            f"job queue: {what}: Redis is unavailable; try again later",
            retry_after=UNAVAILABLE_RETRY_AFTER_S,
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc
    except redis.RedisError as exc:
        # A refused command (out of memory, read-only replica, a script error): the server is up but
        # cannot serve the queue now; the operator's log says why.
        logger.error("job queue: %s: Redis refused: %s", what, exc)
        raise ServiceUnavailable(
            f"job queue: {what}: Redis refused the operation; try again later",
            retry_after=UNAVAILABLE_RETRY_AFTER_S,
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc


def _spec_args(spec: JobSpec, now: float) -> tuple[Any, ...]:
    """A spec as the ``enqueue_one`` Lua helper reads it (redis-py writes floats with repr: exact)."""
    return (
        uuid.uuid4().hex,
        spec.type,
        _encode(spec.payload, "payload"),
        int(spec.priority),
        now if spec.run_at is None else spec.run_at,
        spec.max_retries,
        spec.dedupe_key or "",
        spec.owner,
        spec.target,
        spec.traceparent,
    )


def _encode(value: Any, what: str) -> bytes:
    try:
        return jsonio.encode(value)
    except (jsonio.JsonRejected, TypeError) as exc:
        raise ValidationFailed(f"job {what}: {exc}") from None


def _optional(value: float | None) -> float | str:
    return "" if value is None else value


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(reply: Any) -> dict[bytes, bytes]:
    """A hash as bytes -> bytes, from HGETALL (a dict) or a script's flat [k, v, k, v...] list."""
    items: Iterable[tuple[Any, Any]] = (
        reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
    )
    return {_raw(k): _raw(v) for k, v in items}


def _raw(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _job(h: dict[bytes, bytes]) -> Job:
    finished = h.get(b"finished_at")
    result = h.get(b"result")
    error = h.get(b"error")
    return Job(
        id=h[b"id"].decode(),
        type=h[b"type"].decode(),
        payload=jsonio.decode(h[b"payload"]),
        priority=Priority(int(h[b"priority"])),
        state=JobState(h[b"state"].decode()),
        attempts=int(h[b"attempts"]),
        max_retries=int(h[b"max_retries"]),
        run_at=float(h[b"run_at"]),
        created_at=float(h[b"created_at"]),
        updated_at=float(h[b"updated_at"]),
        owner=h[b"owner"].decode(),
        target=h[b"target"].decode(),
        traceparent=h[b"traceparent"].decode(),
        dedupe_key=h[b"dedupe_key"].decode() or None,
        result=None if result is None else jsonio.decode(result),
        error=None if error is None else error.decode(),
        finished_at=None if finished is None else float(finished),
    )
