"""The queue contract (``arcana.queue.types``), one rule at a time, on every backend.

Every call passes ``now``: the tests move the clock by hand and never sleep.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from arcana.queue.types import Enqueued, JobSpec, JobState, Lease, Priority, QueueBackend

T0 = 1_800_000_000.0
LEASE = 30.0


def claim_one(backend: QueueBackend, now: float = T0, *, fair: bool = False, worker: str = "w1") -> Lease:
    leases = backend.claim(worker, 1, now, LEASE, fair=fair)
    assert len(leases) == 1, f"expected one job to claim at {now}, got {len(leases)}"
    return leases[0]


def drain(backend: QueueBackend, now: float = T0, *, fair: bool = False) -> list[str]:
    """Claim (and complete) one job at a time until none is left: the job types in the order served."""
    served = []
    while leases := backend.claim("w1", 1, now, LEASE, fair=fair):
        assert backend.complete(leases[0], None, now)
        served.append(leases[0].job.type)
    return served


def enqueue(backend: QueueBackend, job_type: str = "t", now: float = T0, **fields: Any) -> str:
    result = backend.enqueue(JobSpec(job_type, **fields), now)
    assert result.created
    return result.id


def expire(backend: QueueBackend, lease: Lease) -> Lease:
    """Let ``lease`` run out; the next claim reaps the job and takes it again."""
    return claim_one(backend, lease.until + 1, worker="w2")


# Priorities and order.


def test_priorities_are_served_in_strict_order(backend: QueueBackend) -> None:
    for priority in [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL] * 2:
        enqueue(backend, priority.label, priority=priority)
    assert drain(backend) == ["critical", "critical", "high", "high", "normal", "normal", "low", "low"]


def test_jobs_of_one_priority_are_served_oldest_run_at_first_then_in_enqueue_order(backend: QueueBackend) -> None:
    for name in ["a", "b", "c", "d"]:
        enqueue(backend, name)
    enqueue(backend, "older", run_at=T0 - 5)
    assert drain(backend) == ["older", "a", "b", "c", "d"]


def test_a_fair_claim_takes_the_longest_waiting_job_whatever_its_priority(backend: QueueBackend) -> None:
    enqueue(backend, "critical", priority=Priority.CRITICAL)
    enqueue(backend, "high", priority=Priority.HIGH, run_at=T0 - 5)
    enqueue(backend, "low", priority=Priority.LOW, run_at=T0 - 10)
    assert claim_one(backend, fair=True).job.type == "low"
    assert claim_one(backend, fair=True).job.type == "high"
    assert claim_one(backend, fair=True).job.type == "critical"


def _serve_under_a_high_stream(backend: QueueBackend, fair_every: int) -> int:
    """Two high jobs arrive per claim, more than one worker keeps up with; how many of 5 old low jobs got served."""
    for _ in range(5):
        enqueue(backend, "low", priority=Priority.LOW, now=T0 - 1)
    low_served = 0
    for n in range(60):
        now = T0 + n
        backend.enqueue_many([JobSpec("high", priority=Priority.HIGH)] * 2, now)
        fair = fair_every > 0 and n % fair_every == fair_every - 1
        lease = claim_one(backend, now, fair=fair)
        low_served += lease.job.type == "low"
        assert backend.complete(lease, None, now)
    return low_served


def test_a_steady_high_stream_starves_low_jobs_under_strict_order_alone(backend: QueueBackend) -> None:
    assert _serve_under_a_high_stream(backend, fair_every=0) == 0


def test_a_fair_claim_every_few_claims_still_serves_low_jobs_under_a_steady_high_stream(
    backend: QueueBackend,
) -> None:
    assert _serve_under_a_high_stream(backend, fair_every=5) == 5


# Delays and claim limits.


def test_a_delayed_job_is_claimable_only_once_its_run_at_has_come(backend: QueueBackend) -> None:
    job_id = enqueue(backend, run_at=T0 + 60)
    assert backend.claim("w1", 10, T0 + 59.9, LEASE) == []
    assert backend.stats(T0).delayed == 1
    assert [lease.job.id for lease in backend.claim("w1", 10, T0 + 60, LEASE)] == [job_id]


def test_a_claim_takes_at_most_its_limit(backend: QueueBackend) -> None:
    backend.enqueue_many([JobSpec("t")] * 5, T0)
    assert len(backend.claim("w1", 3, T0, LEASE)) == 3
    assert len(backend.claim("w1", 3, T0, LEASE)) == 2
    assert backend.claim("w1", 3, T0, LEASE) == []


def test_a_claim_leases_its_jobs(backend: QueueBackend) -> None:
    job_id = enqueue(backend)
    lease = claim_one(backend, T0 + 1)
    assert (lease.job.id, lease.job.state, lease.job.attempts) == (job_id, JobState.RUNNING, 1)
    assert lease.until == T0 + 1 + LEASE and lease.token
    stored = backend.get(job_id)
    assert stored is not None and stored.state == JobState.RUNNING and stored.attempts == 1


def test_racing_claimers_each_get_different_jobs(backend: QueueBackend) -> None:
    backend.enqueue_many([JobSpec("t", n) for n in range(200)], T0)
    start = threading.Barrier(4)

    def worker(n: int) -> list[str]:
        start.wait()
        taken: list[str] = []
        while leases := backend.claim(f"w{n}", 5, T0, LEASE):
            taken += [lease.job.id for lease in leases]
        return taken

    with ThreadPoolExecutor(4) as pool:
        taken = [job_id for run in pool.map(worker, range(4)) for job_id in run]
    assert len(taken) == len(set(taken)) == 200


def test_a_leased_job_is_not_claimed_again_while_its_lease_lasts(backend: QueueBackend) -> None:
    enqueue(backend)
    lease = claim_one(backend)
    assert backend.claim("w2", 10, lease.until - 0.1, LEASE) == []


# Expired leases.


def test_an_expired_lease_is_reaped_and_claimed_again_with_the_attempt_counted(backend: QueueBackend) -> None:
    job_id = enqueue(backend, max_retries=2)
    first = claim_one(backend)
    second = expire(backend, first)
    assert second.job.id == job_id and second.job.attempts == 2
    assert second.token != first.token
    assert second.until == first.until + 1 + LEASE


def test_an_expired_lease_with_no_attempts_left_is_dead_with_lease_expired(backend: QueueBackend) -> None:
    job_id = enqueue(backend, max_retries=1)
    first = claim_one(backend)
    second = expire(backend, first)
    assert backend.claim("w3", 10, second.until + 1, LEASE) == []
    job = backend.get(job_id)
    assert job is not None
    assert (job.state, job.error, job.attempts) == (JobState.DEAD, "lease expired", 2)
    assert [dead.id for dead in backend.dead(10)] == [job_id]


def test_extend_pushes_the_lease_end(backend: QueueBackend) -> None:
    enqueue(backend)
    lease = claim_one(backend)
    assert backend.extend([lease], lease.until - 1, LEASE) == [True]
    new_end = lease.until - 1 + LEASE
    assert backend.claim("w2", 10, new_end - 0.1, LEASE) == []
    assert len(backend.claim("w2", 10, new_end + 0.1, LEASE)) == 1


def test_extend_answers_per_lease(backend: QueueBackend) -> None:
    backend.enqueue_many([JobSpec("a"), JobSpec("b")], T0)
    a, b = backend.claim("w1", 2, T0, LEASE)
    assert backend.complete(a, None, T0)
    assert backend.extend([a, b], T0 + 1, LEASE) == [False, True]
    assert backend.extend([], T0 + 1, LEASE) == []


def test_a_stale_token_is_refused_and_changes_nothing(backend: QueueBackend) -> None:
    job_id = enqueue(backend, max_retries=3)
    stale = claim_one(backend)
    current = expire(backend, stale)
    now = current.until - 1
    assert backend.extend([stale], now, LEASE) == [False]
    assert not backend.complete(stale, {"late": True}, now)
    assert not backend.fail(stale, "late", now + 5, now)
    assert not backend.fail(stale, "late", None, now)
    assert not backend.release(stale, now, now)
    assert not backend.bury(stale, "late", now)
    job = backend.get(job_id)
    assert job is not None and (job.state, job.attempts, job.result) == (JobState.RUNNING, 2, None)
    assert backend.complete(current, "done", now)


# Outcomes.


def test_complete_keeps_the_result_and_ends_the_lease(backend: QueueBackend) -> None:
    job_id = enqueue(backend)
    lease = claim_one(backend)
    assert backend.complete(lease, {"n": 1}, T0 + 2)
    job = backend.get(job_id)
    assert job is not None
    assert (job.state, job.result, job.finished_at, job.updated_at) == (JobState.SUCCEEDED, {"n": 1}, T0 + 2, T0 + 2)
    assert not backend.complete(lease, {"n": 2}, T0 + 3)  # once
    assert backend.claim("w1", 10, T0 + 3600, LEASE) == []


def test_complete_many_completes_each_held_lease_and_refuses_a_stale_one(backend: QueueBackend) -> None:
    first, second, third = enqueue(backend), enqueue(backend), enqueue(backend)
    leases = {lease.job.id: lease for lease in backend.claim("w1", 10, T0, LEASE)}
    assert backend.complete(leases[second], "alone", T0 + 1)
    done = [(leases[first], {"n": 1}), (leases[second], "again"), (leases[third], [3])]
    assert backend.complete_many(done, T0 + 2) == [True, False, True]
    results = {job_id: backend.get(job_id) for job_id in (first, second, third)}
    assert [(j.state, j.result) for j in results.values() if j is not None] == [
        (JobState.SUCCEEDED, {"n": 1}),
        (JobState.SUCCEEDED, "alone"),
        (JobState.SUCCEEDED, [3]),
    ]
    assert backend.complete_many([], T0 + 3) == []


def test_fail_with_a_retry_time_makes_the_job_runnable_again_then(backend: QueueBackend) -> None:
    job_id = enqueue(backend)
    assert backend.fail(claim_one(backend), "boom", T0 + 10, T0 + 1)
    job = backend.get(job_id)
    assert job is not None
    assert (job.state, job.error, job.run_at, job.attempts) == (JobState.FAILED, "boom", T0 + 10, 1)
    assert backend.claim("w1", 10, T0 + 9, LEASE) == []
    retry = claim_one(backend, T0 + 10)
    assert (retry.job.id, retry.job.attempts) == (job_id, 2)


def test_fail_without_a_retry_time_makes_the_job_dead(backend: QueueBackend) -> None:
    job_id = enqueue(backend, max_retries=5)
    assert backend.fail(claim_one(backend), "fatal", None, T0 + 1)
    job = backend.get(job_id)
    assert job is not None
    assert (job.state, job.error, job.finished_at) == (JobState.DEAD, "fatal", T0 + 1)
    assert backend.claim("w1", 10, T0 + 3600, LEASE) == []


def test_release_puts_the_job_back_without_counting_the_attempt(backend: QueueBackend) -> None:
    job_id = enqueue(backend)
    assert backend.release(claim_one(backend), T0 + 5, T0 + 1, error="no plugin serves t")
    job = backend.get(job_id)
    assert job is not None
    assert (job.state, job.attempts, job.run_at, job.error) == (JobState.QUEUED, 0, T0 + 5, "no plugin serves t")
    assert backend.claim("w1", 10, T0 + 4, LEASE) == []
    assert claim_one(backend, T0 + 5).job.attempts == 1


def test_bury_makes_the_job_dead_whatever_attempts_are_left(backend: QueueBackend) -> None:
    job_id = enqueue(backend, max_retries=10)
    assert backend.bury(claim_one(backend), "unrouted for an hour", T0 + 1)
    job = backend.get(job_id)
    assert job is not None and (job.state, job.error) == (JobState.DEAD, "unrouted for an hour")


def test_get_returns_every_field_as_enqueued(backend: QueueBackend) -> None:
    spec = JobSpec(
        "mail.send",
        {"to": "a@b"},
        Priority.HIGH,
        run_at=T0 + 7,
        max_retries=4,
        dedupe_key="mail:1",
        owner="mailer",
        target="audit/on_event",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    job_id = backend.enqueue(spec, T0).id
    job = backend.get(job_id)
    assert job is not None
    got = (job.type, job.payload, job.priority, job.run_at, job.max_retries, job.dedupe_key)
    assert got == ("mail.send", {"to": "a@b"}, Priority.HIGH, T0 + 7, 4, "mail:1")
    assert (job.owner, job.target, job.traceparent) == ("mailer", "audit/on_event", spec.traceparent)
    assert (job.state, job.attempts, job.created_at, job.updated_at) == (JobState.QUEUED, 0, T0, T0)
    assert (job.result, job.error, job.finished_at) == (None, None, None)
    assert backend.get("no-such-job") is None


def test_a_job_without_run_at_runs_now(backend: QueueBackend) -> None:
    job = backend.get(enqueue(backend, now=T0 + 3))
    assert job is not None and job.run_at == T0 + 3


@pytest.mark.parametrize(
    "value",
    [
        {"nested": {"list": [1, 2.5, None, True, False, "x"], "deeper": [{"a": [[]]}]}},
        {"unicode": "héllo wörld ✓ 日本語 🎉", 'quote"and\\slash': "\n\t"},
        ["a", 1, None],
        "just a string",
        0,
        None,
    ],
)
def test_payloads_and_results_come_back_as_given(backend: QueueBackend, value: Any) -> None:
    job_id = enqueue(backend, payload=value)
    lease = claim_one(backend)
    assert lease.job.payload == value
    assert backend.complete(lease, value, T0)
    job = backend.get(job_id)
    assert job is not None and (job.payload, job.result) == (value, value)


# Dedupe.


def test_an_enqueue_with_a_held_dedupe_key_returns_the_first_job(backend: QueueBackend) -> None:
    first = backend.enqueue(JobSpec("t", {"n": 1}, dedupe_key="k"), T0)
    again = backend.enqueue(JobSpec("t", {"n": 2}, dedupe_key="k"), T0 + 1)
    assert first.created and again == Enqueued(first.id, False)
    assert sum(backend.stats(T0 + 1).ready.values()) == 1
    job = backend.get(first.id)
    assert job is not None and job.payload == {"n": 1}


def test_a_dedupe_key_is_held_in_every_state_until_the_job_is_deleted(backend: QueueBackend) -> None:
    first = backend.enqueue(JobSpec("t", dedupe_key="k"), T0)
    assert backend.complete(claim_one(backend), None, T0)
    assert backend.enqueue(JobSpec("t", dedupe_key="k"), T0 + 1) == Enqueued(first.id, False)
    assert backend.sweep(T0 + 100, retention_s=10) == 1
    assert backend.enqueue(JobSpec("t", dedupe_key="k"), T0 + 100).created


def test_a_purged_dead_job_frees_its_dedupe_key(backend: QueueBackend) -> None:
    first = backend.enqueue(JobSpec("t", dedupe_key="k"), T0)
    assert backend.fail(claim_one(backend), "x", None, T0)
    assert backend.enqueue(JobSpec("t", dedupe_key="k"), T0) == Enqueued(first.id, False)
    assert backend.purge([first.id]) == 1
    assert backend.enqueue(JobSpec("t", dedupe_key="k"), T0).created


def test_enqueue_many_dedupes_each_job_against_the_store_and_the_batch(backend: QueueBackend) -> None:
    held = backend.enqueue(JobSpec("t", dedupe_key="held"), T0)
    results = backend.enqueue_many(
        [
            JobSpec("a", dedupe_key="new"),
            JobSpec("b"),
            JobSpec("c", dedupe_key="new"),
            JobSpec("d", dedupe_key="held"),
            JobSpec("e"),
        ],
        T0,
    )
    a, b, c, d, e = results
    assert a.created and b.created and e.created and len({a.id, b.id, e.id, held.id}) == 4
    assert c == Enqueued(a.id, False) and d == Enqueued(held.id, False)
    assert sorted(drain(backend)) == ["a", "b", "e", "t"]
    assert backend.enqueue_many([], T0) == []


def test_racing_enqueues_with_one_dedupe_key_store_one_job(backend: QueueBackend) -> None:
    start = threading.Barrier(8)

    def producer(n: int) -> Enqueued:
        start.wait()
        return backend.enqueue(JobSpec("t", {"n": n}, dedupe_key="k"), T0)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(producer, range(8)))
    assert sum(r.created for r in results) == 1 and len({r.id for r in results}) == 1
    assert drain(backend) == ["t"]


# Stats.


def test_stats_count_ready_jobs_per_priority_and_the_other_states(backend: QueueBackend) -> None:
    backend.enqueue_many(
        [JobSpec("t", priority=Priority.CRITICAL)]
        + [JobSpec("t", priority=Priority.HIGH)] * 2
        + [JobSpec("t", priority=Priority.LOW)] * 5,
        T0,
    )
    # One at a time: critical, high, high, low, low.
    done, dead, retry_soon, retry_later, _running = (claim_one(backend) for _ in range(5))
    assert backend.complete(done, None, T0)
    assert backend.fail(dead, "x", None, T0)
    assert backend.fail(retry_soon, "x", T0 - 1, T0)  # runnable again: ready
    assert backend.fail(retry_later, "x", T0 + 60, T0)  # waits: delayed
    enqueue(backend, run_at=T0 + 30)
    stats = backend.stats(T0)
    assert stats.ready == {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 0, Priority.LOW: 3}
    assert (stats.delayed, stats.running, stats.dead, stats.succeeded) == (2, 1, 1, 1)
    later = backend.stats(T0 + 60)
    assert later.ready == {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.NORMAL: 1, Priority.LOW: 4}
    assert later.delayed == 0


def test_stats_of_an_empty_queue_list_every_priority(backend: QueueBackend) -> None:
    stats = backend.stats(T0)
    assert stats.ready == {p: 0 for p in Priority}
    assert (stats.delayed, stats.running, stats.dead, stats.succeeded) == (0, 0, 0, 0)


# Dead letters.


def _dead_jobs(backend: QueueBackend, count: int) -> list[str]:
    """``count`` dead jobs, the first to die first."""
    ids = [enqueue(backend, f"j{i}") for i in range(count)]
    for i in range(count):
        assert backend.fail(claim_one(backend), f"error {i}", None, T0 + i)
    return ids


def test_dead_jobs_are_listed_most_recently_dead_first_a_page_at_a_time(backend: QueueBackend) -> None:
    ids = _dead_jobs(backend, 4)
    enqueue(backend, "alive")
    assert [job.id for job in backend.dead(10)] == ids[::-1]
    assert [job.id for job in backend.dead(2, offset=1)] == [ids[2], ids[1]]
    assert backend.dead(10, offset=4) == []
    assert backend.dead(1)[0].error == "error 3"


def test_replay_queues_the_given_dead_jobs_again_with_no_attempts(backend: QueueBackend) -> None:
    ids = _dead_jobs(backend, 3)
    alive = enqueue(backend, "alive")
    assert backend.replay([ids[0], ids[2], alive, "no-such-job"], T0 + 50) == 2
    job = backend.get(ids[0])
    assert job is not None and (job.state, job.attempts) == (JobState.QUEUED, 0)
    assert [d.id for d in backend.dead(10)] == [ids[1]]
    assert sorted(drain(backend, T0 + 50)) == ["alive", "j0", "j2"]


def test_replay_of_all_queues_every_dead_job(backend: QueueBackend) -> None:
    _dead_jobs(backend, 3)
    assert backend.replay(None, T0 + 50) == 3
    assert backend.dead(10) == [] and backend.stats(T0 + 50).ready[Priority.NORMAL] == 3
    assert backend.replay(None, T0 + 50) == 0
    assert backend.replay([], T0 + 50) == 0


def test_purge_deletes_only_dead_jobs(backend: QueueBackend) -> None:
    ids = _dead_jobs(backend, 3)
    alive = enqueue(backend, "alive")
    assert backend.purge([ids[1], alive]) == 1
    assert backend.get(ids[1]) is None and backend.get(alive) is not None
    assert backend.purge(None) == 2
    assert backend.dead(10) == [] and backend.get(alive) is not None


# Schedules.


def test_the_first_tick_of_a_schedule_is_recorded_without_a_job(backend: QueueBackend) -> None:
    assert backend.tick("p/every-minute", T0, JobSpec("report"), T0) is None
    assert backend.stats(T0).ready[Priority.NORMAL] == 0


def test_each_newer_tick_enqueues_once_and_older_or_equal_ticks_nothing(backend: QueueBackend) -> None:
    spec = JobSpec("report")
    backend.tick("k", T0, spec, T0)
    made = backend.tick("k", T0 + 60, spec, T0 + 60)
    assert made is not None and made.created
    assert backend.tick("k", T0 + 60, spec, T0 + 61) is None
    assert backend.tick("k", T0 + 30, spec, T0 + 61) is None
    # Ticks missed while no scheduler ran: the next one seen is enqueued once.
    assert backend.tick("k", T0 + 600, spec, T0 + 600) is not None
    assert drain(backend, T0 + 600) == ["report", "report"]
    # Keys are independent.
    assert backend.tick("other", T0 + 600, spec, T0 + 600) is None


def test_two_schedulers_racing_on_one_tick_enqueue_exactly_one_job(backend: QueueBackend) -> None:
    spec = JobSpec("report")
    backend.tick("k", T0, spec, T0)
    start = threading.Barrier(8)

    def scheduler(_: int) -> Enqueued | None:
        start.wait()
        return backend.tick("k", T0 + 60, spec, T0 + 60)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(scheduler, range(8)))
    assert sum(outcome is not None for outcome in outcomes) == 1
    assert drain(backend, T0 + 60) == ["report"]


# Retention.


def test_sweep_deletes_only_succeeded_jobs_past_retention(backend: QueueBackend) -> None:
    old, recent = enqueue(backend, "old"), enqueue(backend, "recent")
    dead, failed, queued = enqueue(backend, "dead"), enqueue(backend, "failed"), enqueue(backend, "queued")
    assert backend.complete(claim_one(backend), None, T0)
    assert backend.complete(claim_one(backend), None, T0 + 50)
    assert backend.fail(claim_one(backend), "x", None, T0)
    assert backend.fail(claim_one(backend), "x", T0 + 1000, T0)
    assert backend.sweep(T0 + 100, retention_s=100) == 0
    assert backend.sweep(T0 + 101, retention_s=100) == 1
    assert backend.get(old) is None
    assert all(backend.get(i) is not None for i in (recent, dead, failed, queued))
