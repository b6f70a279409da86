"""The queue in the kernel's own database: SQLite (embedded default) or PostgreSQL, one code path.

Every write is one transaction on a ``writer`` engine, so on SQLite it holds
the write lock from ``BEGIN IMMEDIATE`` and competing processes queue on the
busy timeout. A claim is one such transaction: an ``UPDATE`` that reaps
expired leases, then one ``UPDATE ... WHERE id IN (<the next runnable ids>)
RETURNING`` that leases a whole batch. On PostgreSQL the inner ``SELECT``
takes its rows ``FOR UPDATE SKIP LOCKED``, so concurrent claimers take
different jobs instead of waiting on each other.

Dedupe rests on the unique ``dedupe_key``: ``INSERT ... ON CONFLICT DO
NOTHING`` on both dialects, then the holder's id is read back. A schedule
tick is a conditional write on its ``last_tick`` (only the scheduler that
moves it forward enqueues) in the same transaction as the enqueue.

The engine belongs to the caller (``arcana.database.Database``): ``close``
leaves it open.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from arcana import jsonio
from arcana.database import describe, transaction, writer
from arcana.errors import ServiceUnavailable, ValidationFailed
from arcana.queue.sql_schema import DEAD, RUNNABLE, RUNNING, SUCCEEDED, jobs, schedules
from arcana.queue.types import Enqueued, Job, JobSpec, JobState, Lease, Priority, QueueStats

logger = logging.getLogger("arcana.queue")
WHAT = "queue"
# Rows per INSERT and ids per IN (...): well under SQLite's limit on bound parameters.
_CHUNK = 200
# Succeeded jobs deleted per sweep transaction: one long delete would keep SQLite's write lock from the workers.
_SWEEP_CHUNK = 1000
# A dedupe holder can be deleted (sweep, purge) between our conflict and our read: insert again, this often.
_DEDUPE_ROUNDS = 3
# Literal conditions that match the partial indexes (see arcana.queue.sql_schema).
_RUNNABLE, _RUNNING, _SUCCEEDED, _DEAD = (sa.text(c) for c in (RUNNABLE, RUNNING, SUCCEEDED, DEAD))
_STRICT_ORDER = (jobs.c.priority, jobs.c.run_at, jobs.c.id)
_FAIR_ORDER = (jobs.c.run_at, jobs.c.id)


class _JobIds:
    """Ids that sort in enqueue order: 16 hex digits of a strictly increasing ns stamp, then 16 random ones.

    Within a process the order is exact; across processes it is the wall
    clock's, which is all "enqueue order" can mean there.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            self._last = max(time.time_ns(), self._last + 1)
            stamp = self._last
        return f"{stamp:016x}{secrets.token_hex(8)}"


new_job_id = _JobIds().next


def _dump(value: Any, what: str) -> str:
    try:
        return jsonio.encode(value).decode()
    except jsonio.JsonRejected as exc:
        raise ValidationFailed(f"job {what}: {exc}") from None


def _load(text: str | None) -> Any:
    return None if text is None else jsonio.decode(text.encode())


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        type=row.type,
        payload=_load(row.payload),
        priority=Priority(row.priority),
        state=JobState(row.state),
        attempts=row.attempts,
        max_retries=row.max_retries,
        # SQLite hands back a REAL that holds a whole number as an int (in RETURNING rows).
        run_at=float(row.run_at),
        created_at=float(row.created_at),
        updated_at=float(row.updated_at),
        owner=row.owner,
        target=row.target,
        traceparent=row.traceparent,
        dedupe_key=row.dedupe_key,
        result=_load(row.result),
        error=row.error,
        finished_at=None if row.finished_at is None else float(row.finished_at),
    )


def _new_row(spec: JobSpec, job_id: str, now: float) -> dict[str, Any]:
    return {
        "id": job_id,
        "type": spec.type,
        "payload": _dump(spec.payload, "payload"),
        "priority": int(spec.priority),
        "state": JobState.QUEUED.value,
        "attempts": 0,
        "max_retries": spec.max_retries,
        "run_at": now if spec.run_at is None else spec.run_at,
        "created_at": now,
        "updated_at": now,
        "owner": spec.owner,
        "target": spec.target,
        "traceparent": spec.traceparent,
        "dedupe_key": spec.dedupe_key,
    }


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


class SqlQueueBackend:
    """``QueueBackend`` on a SQLAlchemy engine (see ``arcana.database.create_db_engine``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgres else sqlite.insert
        # Stats count from one snapshot (a SQLite read transaction is one already).
        self._snapshot = engine.execution_options(isolation_level="REPEATABLE READ") if self._postgres else engine

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with transaction(self._writer, WHAT) as conn:
                yield conn
        except sa_exc.IntegrityError as exc:
            # Dedupe conflicts never raise (ON CONFLICT DO NOTHING); this is a job id drawn twice,
            # which a retry (new ids) gets past. The transaction was rolled back: nothing was stored.
            logger.error("%s: integrity error: %s", WHAT, describe(exc))
            raise ServiceUnavailable(f"{WHAT}: the write collided; try again", retry_after=1) from exc

    @contextmanager
    def _read(self, engine: Engine | None = None) -> Iterator[Connection]:
        with transaction(engine or self._engine, WHAT) as conn:
            yield conn

    def _locking(self, select: sa.Select[Any]) -> sa.Select[Any]:
        """PostgreSQL: skip rows another transaction holds (SQLite has one writer at a time anyway)."""
        return select.with_for_update(skip_locked=True) if self._postgres else select

    # Enqueueing.

    def enqueue(self, spec: JobSpec, now: float) -> Enqueued:
        return self.enqueue_many([spec], now)[0]

    def enqueue_many(self, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        if not specs:
            return []
        with self._write() as conn:
            return self._enqueue(conn, specs, now)

    def _enqueue(self, conn: Connection, specs: Sequence[JobSpec], now: float) -> list[Enqueued]:
        results: list[Enqueued | None] = [None] * len(specs)
        pending = list(range(len(specs)))
        for _ in range(_DEDUPE_ROUNDS):
            pending = self._insert_round(conn, specs, pending, results, now)
            if not pending:
                return [r for r in results if r is not None]
        raise ServiceUnavailable(f"{WHAT}: deduplicated jobs kept vanishing while enqueueing; try again")

    def _insert_round(
        self, conn: Connection, specs: Sequence[JobSpec], todo: list[int], results: list[Enqueued | None], now: float
    ) -> list[int]:
        """Insert specs[todo]; fill in results; return the indexes whose dedupe holder vanished meanwhile."""
        ids = {i: new_job_id() for i in todo}
        rows = [_new_row(specs[i], ids[i], now) for i in todo]
        stmt = self._insert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.dedupe_key]).returning(jobs.c.id)
        created: set[str] = set()
        for start in range(0, len(rows), _CHUNK):
            created.update(conn.execute(stmt, rows[start : start + _CHUNK]).scalars())
        keys = list({k for i in todo if ids[i] not in created and (k := specs[i].dedupe_key) is not None})
        holders: dict[str, str] = {}
        for chunk in _chunks(keys):
            found = conn.execute(sa.select(jobs.c.dedupe_key, jobs.c.id).where(jobs.c.dedupe_key.in_(chunk)))
            holders.update({key: job_id for key, job_id in found.all()})
        lost = []
        for i in todo:
            key = specs[i].dedupe_key
            if ids[i] in created:
                results[i] = Enqueued(ids[i], True)
            elif key is not None and key in holders:
                results[i] = Enqueued(holders[key], False)
            else:
                lost.append(i)
        return lost

    # Leases.

    def claim(self, worker: str, limit: int, now: float, lease_s: float, fair: bool = False) -> list[Lease]:
        if limit < 1:
            return []
        token, until = secrets.token_hex(16), now + lease_s
        order = _FAIR_ORDER if fair else _STRICT_ORDER
        # One token for the whole batch: a token only has to differ from the job's previous and next leases.
        picked = self._locking(
            sa.select(jobs.c.id).where(_RUNNABLE, jobs.c.run_at <= now).order_by(*order).limit(limit)
        )
        stmt = (
            jobs.update()
            .where(jobs.c.id.in_(picked.scalar_subquery()))
            .values(
                state=JobState.RUNNING.value,
                attempts=jobs.c.attempts + 1,
                lease_token=token,
                lease_until=until,
                worker=worker,
                updated_at=now,
            )
            .returning(*jobs.c)
        )
        with self._write() as conn:
            self._reap(conn, now)
            rows = conn.execute(stmt).all()
        leases = [Lease(_job(row), token, until) for row in rows]
        if fair:
            leases.sort(key=lambda lease: (lease.job.run_at, lease.job.id))
        else:
            leases.sort(key=lambda lease: (lease.job.priority, lease.job.run_at, lease.job.id))
        return leases

    def _reap(self, conn: Connection, now: float) -> None:
        """Expired leases: runnable again at once while attempts are left (run_at kept: first in line), else dead."""
        expired = self._locking(sa.select(jobs.c.id).where(_RUNNING, jobs.c.lease_until <= now))
        exhausted = jobs.c.attempts > jobs.c.max_retries
        conn.execute(
            jobs.update()
            .where(jobs.c.id.in_(expired.scalar_subquery()))
            .values(
                state=sa.case((exhausted, JobState.DEAD.value), else_=JobState.FAILED.value),
                finished_at=sa.case((exhausted, now), else_=None),
                error="lease expired",
                lease_token=None,
                lease_until=None,
                updated_at=now,
            )
        )

    def extend(self, leases: Sequence[Lease], now: float, lease_s: float) -> list[bool]:
        if not leases:
            return []
        held = sa.or_(*(sa.and_(jobs.c.id == lease.job.id, jobs.c.lease_token == lease.token) for lease in leases))
        stmt = (
            jobs.update()
            .where(jobs.c.state == JobState.RUNNING.value, held)
            .values(lease_until=now + lease_s)
            .returning(jobs.c.id)
        )
        with self._write() as conn:
            extended = set(conn.execute(stmt).scalars())
        return [lease.job.id in extended for lease in leases]

    def _finish(self, lease: Lease, now: float, **values: Any) -> bool:
        """Apply ``values`` if the lease is still the job's current one; end the lease."""
        stmt = self._finishing(lease).values(lease_token=None, lease_until=None, updated_at=now, **values)
        with self._write() as conn:
            return conn.execute(stmt).rowcount == 1

    @staticmethod
    def _finishing(lease: Lease) -> sa.Update:
        """An update of the job that only applies while ``lease`` is still its current one."""
        return jobs.update().where(
            jobs.c.id == lease.job.id,
            jobs.c.lease_token == lease.token,
            jobs.c.state == JobState.RUNNING.value,
        )

    def complete(self, lease: Lease, result: Any, now: float) -> bool:
        return self._finish(
            lease, now, state=JobState.SUCCEEDED.value, result=_dump(result, "result"), error=None, finished_at=now
        )

    def complete_many(self, done: Sequence[tuple[Lease, Any]], now: float) -> list[bool]:
        """One transaction for the batch: on SQLite the commit (and its fsync) is most of a completion's cost."""
        if not done:
            return []
        values = [(lease, _dump(result, "result")) for lease, result in done]
        held = []
        with self._write() as conn:
            for lease, result in values:
                stmt = self._finishing(lease).values(
                    lease_token=None,
                    lease_until=None,
                    updated_at=now,
                    state=JobState.SUCCEEDED.value,
                    result=result,
                    error=None,
                    finished_at=now,
                )
                held.append(conn.execute(stmt).rowcount == 1)
        return held

    def fail(self, lease: Lease, error: str, retry_at: float | None, now: float) -> bool:
        if retry_at is None:
            return self.bury(lease, error, now)
        return self._finish(lease, now, state=JobState.FAILED.value, error=error, run_at=retry_at)

    def release(self, lease: Lease, run_at: float, now: float, error: str | None = None) -> bool:
        return self._finish(
            lease, now, state=JobState.QUEUED.value, attempts=jobs.c.attempts - 1, run_at=run_at, error=error
        )

    def bury(self, lease: Lease, error: str, now: float) -> bool:
        return self._finish(lease, now, state=JobState.DEAD.value, error=error, finished_at=now)

    # Reading.

    def get(self, job_id: str) -> Job | None:
        with self._read() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else _job(row)

    def stats(self, now: float) -> QueueStats:
        due = jobs.c.run_at <= now
        per_priority = sa.select(jobs.c.priority, sa.func.count()).where(_RUNNABLE, due).group_by(jobs.c.priority)
        with self._read(self._snapshot) as conn:
            ready = {Priority(p): n for p, n in conn.execute(per_priority).all()}
            delayed, running, dead, succeeded = (
                conn.execute(sa.select(sa.func.count()).select_from(jobs).where(*where)).scalar_one()
                for where in ((_RUNNABLE, sa.not_(due)), (_RUNNING,), (_DEAD,), (_SUCCEEDED,))
            )
        return QueueStats({p: ready.get(p, 0) for p in Priority}, delayed, running, dead, succeeded)

    def dead(self, limit: int, offset: int = 0) -> list[Job]:
        stmt = (
            sa.select(jobs)
            .where(_DEAD)
            .order_by(jobs.c.finished_at.desc(), jobs.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            return [_job(row) for row in conn.execute(stmt)]

    # Dead letters and retention.

    def replay(self, ids: Sequence[str] | None, now: float) -> int:
        again = {
            "state": JobState.QUEUED.value,
            "attempts": 0,
            "run_at": now,
            "finished_at": None,
            "updated_at": now,
        }
        return self._on_dead(ids, lambda where: jobs.update().where(where).values(**again))

    def purge(self, ids: Sequence[str] | None) -> int:
        return self._on_dead(ids, lambda where: jobs.delete().where(where))

    def _on_dead(self, ids: Sequence[str] | None, statement: Callable[[sa.ColumnElement[bool]], sa.Executable]) -> int:
        """Run ``statement(where)`` on the dead jobs among ``ids`` (all when None), in one transaction; rows hit."""
        if ids is None:
            wheres = [sa.and_(_DEAD)]
        else:
            wheres = [sa.and_(_DEAD, jobs.c.id.in_(chunk)) for chunk in _chunks(ids)]
        hit = 0
        with self._write() as conn:
            for where in wheres:
                hit += conn.execute(statement(where)).rowcount
        return hit

    def sweep(self, now: float, retention_s: float) -> int:
        old = sa.select(jobs.c.id).where(_SUCCEEDED, jobs.c.finished_at < now - retention_s).limit(_SWEEP_CHUNK)
        stmt = jobs.delete().where(jobs.c.id.in_(old.scalar_subquery()))
        total = 0
        while True:
            with self._write() as conn:
                deleted = conn.execute(stmt).rowcount
            total += deleted
            if deleted < _SWEEP_CHUNK:
                return total

    # Schedules.

    def tick(self, key: str, tick: float, spec: JobSpec, now: float) -> Enqueued | None:
        first = (
            self._insert(schedules)
            .values(key=key, last_tick=tick)
            .on_conflict_do_nothing(index_elements=[schedules.c.key])
            .returning(schedules.c.key)
        )
        # Compare-and-set: of several schedulers on the same tick, one moves it forward; the others match no row
        # (PostgreSQL re-reads the row it waited for and finds the new tick).
        newer = (
            schedules.update()
            .where(schedules.c.key == key, schedules.c.last_tick < tick)
            .values(last_tick=tick)
            .returning(schedules.c.key)
        )
        with self._write() as conn:
            if conn.execute(first).first() is not None:
                return None  # a new schedule waits for its next tick
            if conn.execute(newer).first() is None:
                return None
            return self._enqueue(conn, [spec], now)[0]

    def close(self) -> None:
        """Nothing to release: the engine is the kernel's ``Database``'s."""
