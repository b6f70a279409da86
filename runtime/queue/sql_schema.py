"""The SQL queue's tables (created by migration 0005_queue; a test compares the two).

Job ids sort in enqueue order (``sql_backend.new_job_id``), so ``id`` is the
tie-breaker after ``run_at`` and no sequence column is needed. The claim
indexes are partial on the runnable states: a claim reads one of them in
order and stops after ``limit`` rows, however many jobs have finished.
Every index is partial on the states it serves, and no index leads with ``state``:
given one, SQLite (which has no statistics) picked it for the claim and
sorted every runnable job. The state conditions are literal SQL, not bound
parameters, because SQLite uses a partial index only when the query repeats
its condition.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# Queued or failed: runnable once run_at has come (see arcana.queue.types).
RUNNABLE = "state IN ('queued', 'failed')"
RUNNING = "state = 'running'"
SUCCEEDED = "state = 'succeeded'"
DEAD = "state = 'dead'"

jobs = sa.Table(
    "queue_jobs",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    # Free-form text from plugins and events (a job type, a topic, a plugin name): bounded by the
    # callers (arcana.queue.jobs), not by a column length that would fail an insert half-way.
    sa.Column("type", sa.Text(), nullable=False),
    # JSON text (arcana.jsonio): the payload as given, "null" for none.
    sa.Column("payload", sa.Text(), nullable=False),
    sa.Column("priority", sa.SmallInteger(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("max_retries", sa.Integer(), nullable=False),
    sa.Column("run_at", sa.Float(), nullable=False),
    sa.Column("created_at", sa.Float(), nullable=False),
    sa.Column("updated_at", sa.Float(), nullable=False),
    # When the job succeeded or died: retention and the dead-letter order count from here.
    sa.Column("finished_at", sa.Float(), nullable=True),
    sa.Column("owner", sa.Text(), nullable=False),
    sa.Column("target", sa.Text(), nullable=False),
    sa.Column("traceparent", sa.Text(), nullable=False),
    # NULLs never collide, so only keyed jobs are deduplicated.
    sa.Column("dedupe_key", sa.Text(), nullable=True, unique=True),
    sa.Column("result", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    # The current lease (running jobs only): its token, its end, and the worker holding it.
    sa.Column("lease_token", sa.String(32), nullable=True),
    sa.Column("lease_until", sa.Float(), nullable=True),
    sa.Column("worker", sa.Text(), nullable=True),
    # Strict claims: priority, then oldest run_at, then enqueue order.
    sa.Index(
        "ix_queue_jobs_claim",
        "priority",
        "run_at",
        "id",
        sqlite_where=sa.text(RUNNABLE),
        postgresql_where=sa.text(RUNNABLE),
    ),
    # Fair claims: the longest-waiting runnable jobs whatever their priority.
    sa.Index("ix_queue_jobs_fair", "run_at", "id", sqlite_where=sa.text(RUNNABLE), postgresql_where=sa.text(RUNNABLE)),
    # Reaping expired leases.
    sa.Index("ix_queue_jobs_lease", "lease_until", sqlite_where=sa.text(RUNNING), postgresql_where=sa.text(RUNNING)),
    # Sweeping succeeded jobs; listing dead ones, most recent first.
    sa.Index(
        "ix_queue_jobs_succeeded",
        "finished_at",
        sqlite_where=sa.text(SUCCEEDED),
        postgresql_where=sa.text(SUCCEEDED),
    ),
    sa.Index("ix_queue_jobs_dead", "finished_at", "id", sqlite_where=sa.text(DEAD), postgresql_where=sa.text(DEAD)),
)

# The last tick recorded per schedule key: a tick is enqueued only by the scheduler that moves it forward.
schedules = sa.Table(
    "queue_schedules",
    metadata,
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("last_tick", sa.Float(), nullable=False),
)
