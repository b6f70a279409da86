"""Retry and unrouted policy: pure functions of the job, the clock and the queue config."""

from __future__ import annotations

import dataclasses

import pytest

from arcana.config import QueueConfig
from arcana.queue.policy import backoff_s, retry_at, unrouted_run_at
from arcana.queue.types import Job, JobState, Priority

CONFIG = QueueConfig(backoff_base_ms=1000, backoff_max_ms=10_000, backoff_jitter=0.5)


def job(attempts: int, max_retries: int = 3, created_at: float = 100.0) -> Job:
    return Job("j", "t", None, Priority.NORMAL, JobState.RUNNING, attempts, max_retries, 0.0, created_at, created_at)


@pytest.mark.parametrize(("retry", "seconds"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (60, 10.0)])
def test_the_wait_doubles_from_the_base_up_to_the_maximum(retry: int, seconds: float) -> None:
    assert backoff_s(retry, CONFIG, lambda: 0.0) == seconds


def test_jitter_only_shortens_the_wait_by_at_most_its_fraction() -> None:
    assert backoff_s(3, CONFIG, lambda: 0.5) == 3.0
    assert backoff_s(3, CONFIG, lambda: 0.999999) == pytest.approx(2.0, abs=1e-4)
    no_jitter = dataclasses.replace(CONFIG, backoff_jitter=0.0)
    assert backoff_s(3, no_jitter, lambda: 0.9) == 4.0


def test_a_huge_retry_number_is_capped_not_an_overflow() -> None:
    assert backoff_s(10**9, CONFIG, lambda: 0.0) == 10.0


def test_attempts_up_to_max_retries_are_retried_and_the_next_failure_is_dead() -> None:
    assert retry_at(job(attempts=1), 50.0, CONFIG, lambda: 0.0) == 51.0
    assert retry_at(job(attempts=3), 50.0, CONFIG, lambda: 0.0) == 54.0
    assert retry_at(job(attempts=4), 50.0, CONFIG, lambda: 0.0) is None
    assert retry_at(job(attempts=1, max_retries=0), 50.0, CONFIG, lambda: 0.0) is None


def test_an_unrouted_job_waits_until_it_is_older_than_the_limit() -> None:
    config = dataclasses.replace(CONFIG, unrouted_retry_ms=2000, unrouted_dead_after_s=60)
    assert unrouted_run_at(job(1, created_at=100.0), 159.0, config) == 161.0
    assert unrouted_run_at(job(1, created_at=100.0), 160.0, config) is None
