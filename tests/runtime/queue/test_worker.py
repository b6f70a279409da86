"""The worker in process: real kernel and pools over the fake engine, the in-memory backend, a still clock."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from prometheus_client import REGISTRY

from arcana.queue import policy
from arcana.queue.types import JobSpec, JobState, Priority
from arcana.queue.worker import MAX_ERROR_CHARS
from arcana.types import CallContext
from fakes import Gate, Kernels, async_wait_for, reply, spin, trap
from runtime.queue.worker_harness import Harness, config


@pytest.fixture
def h(kernels: Kernels) -> Harness:
    return Harness(kernels)


def seen(plugin: Any) -> list[Any]:
    return [call.input for call in plugin.calls]


def outcomes(kind: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("arcana_jobs_total", {"kind": kind, "outcome": outcome}) or 0.0


# ---------------------------------------------------------------- dispatch and results


def test_a_job_runs_its_types_handler_with_the_job_envelope_and_its_result_is_kept(h: Harness) -> None:
    async def scenario() -> None:
        plugin = await h.serve(
            "jobber", {"echo": lambda env, _c: {"result": env["job"]["payload"]}}, jobs={"t.echo": "echo"}
        )
        job_id = h.enqueue(
            "t.echo", {"n": 1}, priority=Priority.HIGH, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
        )
        async with h.running(h.worker()):
            job = await h.settled(job_id, [JobState.SUCCEEDED])
        assert job.result == {"n": 1}
        assert job.attempts == 1
        [envelope] = seen(plugin)
        assert envelope["kind"] == "job"
        assert envelope["job"] == {
            "id": job_id,
            "type": "t.echo",
            "payload": {"n": 1},
            "attempt": 1,
            "priority": "high",
        }
        assert envelope["traceparent"] == job.traceparent
        assert envelope["request_id"] == f"{job_id}.1"

    asyncio.run(scenario())


def test_an_empty_answer_succeeds_with_no_result(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"noop": reply({})}, jobs={"t.noop": "noop"})
        job_id = h.enqueue("t.noop")
        before = outcomes("job", "succeeded")
        async with h.running(h.worker()):
            job = await h.settled(job_id, [JobState.SUCCEEDED])
        assert job.result is None
        assert outcomes("job", "succeeded") == before + 1

    asyncio.run(scenario())


def test_an_event_delivery_gets_the_event_envelope_at_its_target_handler(h: Harness) -> None:
    async def scenario() -> None:
        plugin = await h.serve("audit", {"on_any": reply({}), "other": reply({})}, subscribe={"note.*": "on_any"})
        event = {
            "id": "e1",
            "topic": "note.created",
            "source": "notes",
            "time": 1.5,
            "payload": {"id": 7},
            "principal": "u-1",
        }
        job_id = h.enqueue("note.created", event, target="audit/on_any", owner="notes")
        before = outcomes("event", "succeeded")
        async with h.running(h.worker()):
            await h.settled(job_id, [JobState.SUCCEEDED])
        [call] = plugin.calls
        assert call.handler == "on_any"
        assert call.input["kind"] == "event"
        assert call.input["event"] == event
        assert "job" not in call.input
        assert outcomes("event", "succeeded") == before + 1

    asyncio.run(scenario())


def test_an_event_handler_answering_a_result_is_a_failed_attempt(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve("audit", {"on_any": reply({"result": 1})}, subscribe={"x.*": "on_any"})
        job_id = h.enqueue("x.y", {"id": "e"}, target="audit/on_any", max_retries=0)
        async with h.running(h.worker()):
            job = await h.settled(job_id, [JobState.DEAD])
        assert job.error is not None and "PLUGIN_FAILED" in job.error and "result" in job.error

    asyncio.run(scenario())


# ---------------------------------------------------------------- failed attempts, retries, dead


@pytest.mark.parametrize(
    ("handler", "code"),
    [
        (reply({"error": {"code": "CONFLICT", "message": "busy"}}), "CONFLICT: busy"),
        (trap(), "PLUGIN_FAILED"),
        (reply("not json"), "PLUGIN_FAILED"),
        (reply({"status": 200}), "PLUGIN_FAILED"),
        (spin(), "PLUGIN_TIMEOUT"),
    ],
    ids=["error", "trap", "not-json", "unknown-fields", "timeout"],
)
def test_a_handler_error_trap_timeout_or_malformed_answer_is_a_failed_attempt(
    h: Harness, handler: Any, code: str
) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"bad": handler}, jobs={"t.bad": "bad"}, limits={"timeout_ms": 100})
        job_id = h.enqueue("t.bad", max_retries=2)
        async with h.running(h.worker(rand=lambda: 0.0)):
            job = await h.settled(job_id, [JobState.FAILED])
        assert job.attempts == 1
        assert job.error is not None and job.error.startswith(code)
        assert job.run_at == h.clock() + 1.0  # retry 1 waits backoff_base_ms, no jitter drawn

    asyncio.run(scenario())


def test_retries_follow_the_backoff_schedule_then_the_job_is_dead(h: Harness) -> None:
    """Four attempts with max_retries 3: waits of base*2**(n-1) less the seeded jitter, then dead."""

    async def scenario() -> None:
        await h.serve("jobber", {"fail": reply({"error": {"code": "INTERNAL", "message": "no"}})}, jobs={"t.f": "fail"})
        cfg = config(backoff_base_ms=1000, backoff_max_ms=3000, backoff_jitter=0.5)
        expected = random.Random(42)
        job_id = h.enqueue("t.f", max_retries=3)
        before = (outcomes("job", "retried"), outcomes("job", "dead"))
        async with h.running(h.worker(cfg, rand=random.Random(42).random)):
            for attempt, base_s in [(1, 1.0), (2, 2.0), (3, 3.0)]:
                job = await h.settled(job_id, [JobState.FAILED], attempts=attempt)
                wait = job.run_at - h.clock()
                assert wait == pytest.approx(base_s * (1 - 0.5 * expected.random()))
                assert policy.backoff_s(attempt, cfg, lambda: 0.0) == base_s
                h.clock.advance(wait)
            job = await h.settled(job_id, [JobState.DEAD])
        assert job.attempts == 4
        assert job.error == "INTERNAL: no"
        assert (outcomes("job", "retried"), outcomes("job", "dead")) == (before[0] + 3, before[1] + 1)

    asyncio.run(scenario())


def test_a_result_larger_than_the_payload_bound_is_a_failed_attempt(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"big": reply({"result": "x" * 200})}, jobs={"t.big": "big"})
        job_id = h.enqueue("t.big", max_retries=0)
        async with h.running(h.worker(config(max_payload_bytes=100))):
            job = await h.settled(job_id, [JobState.DEAD])
        assert job.result is None
        assert job.error is not None and "queue.max_payload_bytes" in job.error

    asyncio.run(scenario())


def test_the_error_kept_on_a_job_is_bounded(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve(
            "jobber", {"loud": reply({"error": {"code": "CONFLICT", "message": "x" * 10_000}})}, jobs={"t.l": "loud"}
        )
        job_id = h.enqueue("t.l", max_retries=0)
        async with h.running(h.worker()):
            job = await h.settled(job_id, [JobState.DEAD])
        assert job.error is not None and len(job.error) == MAX_ERROR_CHARS

    asyncio.run(scenario())


# ---------------------------------------------------------------- unrouted jobs


def test_a_job_no_plugin_serves_waits_without_using_attempts_then_is_buried(h: Harness) -> None:
    async def scenario() -> None:
        cfg = config(unrouted_retry_ms=2000, unrouted_dead_after_s=60)
        job_id = h.enqueue("t.nobody")
        before = outcomes("job", "unrouted")
        async with h.running(h.worker(cfg)):
            await async_wait_for(lambda: h.job(job_id).run_at > h.clock(), 5, "the job was put back")
            job = h.job(job_id)
            assert (job.state, job.attempts, job.run_at) == (JobState.QUEUED, 0, h.clock() + 2.0)
            assert job.error is not None and "t.nobody" in job.error
            assert outcomes("job", "unrouted") == before + 1
            h.clock.advance(60)
            job = await h.settled(job_id, [JobState.DEAD])
        assert job.error is not None and "queue.unrouted_dead_after_s" in job.error

    asyncio.run(scenario())


def test_an_unrouted_job_runs_once_its_plugin_is_loaded(h: Harness) -> None:
    async def scenario() -> None:
        job_id = h.enqueue("t.later")
        async with h.running(h.worker()):
            await async_wait_for(lambda: h.job(job_id).run_at > h.clock(), 5, "the job was put back")
            await h.serve("late", {"run": reply({"result": "ran"})}, jobs={"t.later": "run"})
            h.clock.advance(2.0)
            job = await h.settled(job_id, [JobState.SUCCEEDED])
        assert (job.result, job.attempts) == ("ran", 1)

    asyncio.run(scenario())


def test_an_event_for_a_version_that_no_longer_subscribes_that_handler_waits(h: Harness) -> None:
    async def scenario() -> None:
        plugin = await h.serve("audit", {"on_any": reply({}), "on_new": reply({})}, subscribe={"a.*": "on_new"})
        job_id = h.enqueue("a.b", {"id": "e"}, target="audit/on_any")
        async with h.running(h.worker()):
            await async_wait_for(lambda: h.job(job_id).run_at > h.clock(), 5, "the event was put back")
        assert h.job(job_id).state == JobState.QUEUED
        assert plugin.calls == []

    asyncio.run(scenario())


# ---------------------------------------------------------------- leases, shutdown, reload, outages


def test_a_long_job_keeps_its_lease_past_the_first_lease_time(h: Harness) -> None:
    async def scenario() -> None:
        gate = Gate({"result": "done"})
        await h.serve("jobber", {"long": gate}, jobs={"t.long": "long"}, limits={"timeout_ms": 10_000})
        job_id = h.enqueue("t.long")
        async with h.running(h.worker(config(lease_s=1.0))):
            await asyncio.to_thread(gate.wait_entered)
            h.clock.advance(0.9)
            extends = h.backend.calls["extend"]
            await async_wait_for(lambda: h.backend.calls["extend"] > extends, 5, "the lease was extended")
            h.clock.advance(0.6)  # past the first lease (claim + 1 s), inside the extended one
            assert h.backend.claim("other", 10, h.clock(), 1.0) == []
            gate.release()
            job = await h.settled(job_id, [JobState.SUCCEEDED])
        assert (job.attempts, job.result) == (1, "done")

    asyncio.run(scenario())


def test_shutdown_releases_jobs_still_running_after_the_grace_period(h: Harness) -> None:
    async def scenario() -> None:
        gate = Gate()
        await h.serve("jobber", {"stuck": gate}, jobs={"t.stuck": "stuck"}, limits={"timeout_ms": 10_000})
        job_id = h.enqueue("t.stuck")
        worker = h.worker(config(shutdown_grace_s=0.05))
        task = asyncio.create_task(worker.run())
        await asyncio.to_thread(gate.wait_entered)
        worker.stop()
        await task
        job = h.job(job_id)
        assert (job.state, job.attempts, job.error) == (JobState.QUEUED, 0, "worker shut down")
        assert h.backend.claim("next", 1, h.clock(), 30)[0].job.id == job_id
        gate.release()

    asyncio.run(scenario())


def test_shutdown_lets_a_running_job_finish_within_the_grace_period(h: Harness) -> None:
    async def scenario() -> None:
        gate = Gate({"result": "finished"})
        await h.serve("jobber", {"slow": gate}, jobs={"t.slow": "slow"}, limits={"timeout_ms": 10_000})
        job_id = h.enqueue("t.slow")
        worker = h.worker(config(shutdown_grace_s=10.0))
        task = asyncio.create_task(worker.run())
        await asyncio.to_thread(gate.wait_entered)
        worker.stop()
        claims = h.backend.calls["claim"]
        gate.release()
        await task
        assert h.job(job_id).state == JobState.SUCCEEDED
        assert h.backend.calls["claim"] == claims  # stopped: no claim after stop

    asyncio.run(scenario())


def test_a_hot_reloaded_plugin_takes_the_next_job_on_its_new_version(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"which": reply({"result": "v1"})}, jobs={"t.which": "which"})
        async with h.running(h.worker()):
            first = await h.settled(h.enqueue("t.which"), [JobState.SUCCEEDED])
            await h.serve(
                "jobber",
                {"which": reply({"result": "v2"})},
                key="jobber-v2",
                version="2.0.0",
                jobs={"t.which": "which"},
            )
            assert h.kernel.registry.snapshot.plugins["jobber"].manifest.version == "2.0.0"
            second = await h.settled(h.enqueue("t.which"), [JobState.SUCCEEDED])
        assert (first.result, second.result) == ("v1", "v2")

    asyncio.run(scenario())


def test_the_worker_survives_a_backend_outage_and_runs_the_job_after_it(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"noop": reply({})}, jobs={"t.noop": "noop"})
        job_id = h.enqueue("t.noop")
        h.backend.down = True
        async with h.running(h.worker()) as worker:
            await async_wait_for(lambda: h.backend.calls["claim"] >= 3, 5, "claims retried during the outage")
            h.backend.down = False
            worker.wake()
            job = await h.settled(job_id, [JobState.SUCCEEDED])
        assert job.attempts == 1

    asyncio.run(scenario())


def test_an_outcome_the_backend_could_not_take_is_recorded_once_it_is_back(h: Harness) -> None:
    async def scenario() -> None:
        gate = Gate({"result": "kept"})
        await h.serve("jobber", {"held": gate}, jobs={"t.held": "held"}, limits={"timeout_ms": 10_000})
        job_id = h.enqueue("t.held")
        async with h.running(h.worker()):
            await asyncio.to_thread(gate.wait_entered)
            h.backend.down = True
            gate.release()
            await async_wait_for(lambda: h.backend.calls["complete_many"] >= 2, 5, "the outcome tried again")
            h.backend.down = False
            job = await h.settled(job_id, [JobState.SUCCEEDED])
        assert (job.result, job.attempts) == ("kept", 1)

    asyncio.run(scenario())


def test_a_backend_bug_is_logged_and_outlived(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"noop": reply({})}, jobs={"t.noop": "noop"})
        job_id = h.enqueue("t.noop")
        h.backend.bug = RuntimeError("backend bug")
        async with h.running(h.worker()):
            await async_wait_for(lambda: h.backend.calls["claim"] >= 2, 5, "claims tried again after the bug")
            h.backend.bug = None
            await h.settled(job_id, [JobState.SUCCEEDED])

    asyncio.run(scenario())
    assert any(r.message == "claiming jobs failed" and r.exc_info for r in caplog.records)


# ---------------------------------------------------------------- claims


def test_claims_never_ask_for_more_than_the_free_concurrency(h: Harness) -> None:
    async def scenario() -> None:
        gate = Gate({})
        await h.serve(
            "jobber", {"held": gate}, jobs={"t.held": "held"}, limits={"timeout_ms": 10_000, "max_concurrency": 8}
        )
        ids = [h.enqueue("t.held") for _ in range(5)]
        async with h.running(h.worker(concurrency=2)) as worker:
            await asyncio.to_thread(gate.wait_entered, 2)
            assert worker.running == 2
            gate.release()
            for job_id in ids:
                await h.settled(job_id, [JobState.SUCCEEDED])
        assert gate.most_inside == 2
        assert all(1 <= limit <= 2 for limit, _fair in h.backend.claims)

    asyncio.run(scenario())


def test_one_claim_in_every_fair_every_is_fair(h: Harness) -> None:
    async def scenario() -> None:
        async with h.running(h.worker(config(fair_every=3))):
            await async_wait_for(lambda: len(h.backend.claims) >= 9, 5, "nine claims")
        fair = [f for _limit, f in h.backend.claims[:9]]
        assert fair == [False, False, True] * 3

    asyncio.run(scenario())


def test_fair_every_zero_makes_no_fair_claims(h: Harness) -> None:
    async def scenario() -> None:
        async with h.running(h.worker(config(fair_every=0))):
            await async_wait_for(lambda: len(h.backend.claims) >= 5, 5, "five claims")
        assert not any(f for _limit, f in h.backend.claims)

    asyncio.run(scenario())


def test_succeeded_jobs_past_retention_are_swept(h: Harness) -> None:
    async def scenario() -> None:
        await h.serve("jobber", {"noop": reply({})}, jobs={"t.noop": "noop"})
        job_id = h.enqueue("t.noop")
        async with h.running(h.worker(config(retention_s=10), sweep_every_s=0.01)):
            await h.settled(job_id, [JobState.SUCCEEDED])
            h.clock.advance(11)
            await async_wait_for(lambda: h.backend.get(job_id) is None, 5, "the old job was swept")

    asyncio.run(scenario())


def test_a_handler_sees_its_own_plugin_and_a_deadline(h: Harness) -> None:
    async def scenario() -> None:
        contexts: list[CallContext] = []

        def look(_env: Any, context: CallContext) -> Any:
            contexts.append(context)
            return {}

        await h.serve("jobber", {"look": look}, jobs={"t.look": "look"})
        job_id = h.enqueue("t.look")
        async with h.running(h.worker()):
            await h.settled(job_id, [JobState.SUCCEEDED])
        [context] = contexts
        assert (context.plugin, context.principal) == ("jobber", None)
        assert context.deadline > 0

    asyncio.run(scenario())


def test_jobs_enqueued_with_specs_keep_priority_order_within_one_claim(h: Harness) -> None:
    async def scenario() -> None:
        order: list[str] = []

        def note(env: Any, _c: CallContext) -> Any:
            order.append(env["job"]["payload"])
            return {}

        await h.serve("jobber", {"note": note}, jobs={"t.note": "note"})
        h.backend.enqueue_many(
            [JobSpec("t.note", p.label, priority=p) for p in (Priority.LOW, Priority.NORMAL, Priority.CRITICAL)],
            h.clock(),
        )
        async with h.running(h.worker(concurrency=1)):
            await async_wait_for(lambda: len(order) == 3, 5, "three jobs")
        assert order == ["critical", "normal", "low"]

    asyncio.run(scenario())
