"""The job queue: jobs and schedule ticks.

Revision ID: 0005_queue
Revises: 0004_token_epochs
Create Date: 2026-12-02

Mirrors ``arcana.queue.sql_schema`` (a test compares the two). New, empty
tables: nothing to backfill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_queue"
down_revision: str | Sequence[str] | None = "0004_token_epochs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Literal SQL, repeated by the queries (SQLite matches a partial index by its condition's text).
RUNNABLE = "state IN ('queued', 'failed')"
RUNNING = "state = 'running'"
SUCCEEDED = "state = 'succeeded'"
DEAD = "state = 'dead'"


def _partial_index(name: str, columns: list[str], where: str) -> None:
    op.create_index(name, "queue_jobs", columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def upgrade() -> None:
    op.create_table(
        "queue_jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("run_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("traceparent", sa.Text(), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_token", sa.String(32), nullable=True),
        sa.Column("lease_until", sa.Float(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.UniqueConstraint("dedupe_key"),
    )
    _partial_index("ix_queue_jobs_claim", ["priority", "run_at", "id"], RUNNABLE)
    _partial_index("ix_queue_jobs_fair", ["run_at", "id"], RUNNABLE)
    _partial_index("ix_queue_jobs_lease", ["lease_until"], RUNNING)
    _partial_index("ix_queue_jobs_succeeded", ["finished_at"], SUCCEEDED)
    _partial_index("ix_queue_jobs_dead", ["finished_at", "id"], DEAD)
    op.create_table(
        "queue_schedules",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("last_tick", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("queue_schedules")
    for index in ("dead", "succeeded", "lease", "fair", "claim"):
        op.drop_index(f"ix_queue_jobs_{index}", table_name="queue_jobs")
    op.drop_table("queue_jobs")
