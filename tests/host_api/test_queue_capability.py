"""``queue_enqueue`` and ``queue_status`` as a plugin calls them: own job types only, own jobs only, bounded."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from arcana.config import ArcanaConfig, QueueConfig
from arcana.errors import ConfigError
from arcana.manifest import Job, Manifest
from arcana.queue.jobs import JobQueue
from arcana.queue.types import Priority
from arcana.types import CallContext, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.queue import QueueCapability
from queue_fakes import HOST_FUNCTIONS, MemoryQueueBackend

Host = Callable[..., dict[str, Any]]
BOUNDS = QueueConfig(max_payload_bytes=256, max_delay_s=60, max_retries_limit=5, max_enqueues_per_call=3)
NOW = 1_000.0


def _config(extra_types: dict[str, list[str]] | None = None) -> ArcanaConfig:
    section = {"queue": {"extra_types": extra_types}} if extra_types else {}
    return ArcanaConfig(queue=BOUNDS, capabilities=section)


@pytest.fixture
def backend() -> MemoryQueueBackend:
    return MemoryQueueBackend(HOST_FUNCTIONS)


def _plugin(name: str, *job_types: str) -> PluginSpec:
    jobs = tuple(Job(t, "handle") for t in job_types)
    return PluginSpec(Manifest(name, "1.0.0", capabilities={"queue": True}, jobs=jobs), frozenset({"queue"}))


def _host(capability: QueueCapability, plugin: PluginSpec, call: CallContext | None = None) -> Host:
    linked = link_capability(capability, plugin)
    one_call = call or CallContext(plugin.name, "1.0.0", "r1", traceparent="00-abc-def-01")

    def host(function: str, /, *, fresh_call: bool = False, **request: Any) -> dict[str, Any]:
        ctx = CallContext(plugin.name, "1.0.0", "r2") if fresh_call else one_call
        return json.loads(linked[function].call(ctx, json.dumps(request).encode()))  # type: ignore[no-any-return]

    return host


def _capability(backend: MemoryQueueBackend, extra_types: dict[str, list[str]] | None = None) -> QueueCapability:
    config = _config(extra_types)
    return QueueCapability.from_config(config, JobQueue(config.queue, backend, clock=lambda: NOW))


def code(reply: dict[str, Any]) -> str | None:
    return reply.get("error", {}).get("code")


def test_a_plugin_enqueues_its_own_job_type_with_its_options_and_the_call_trace(backend: MemoryQueueBackend) -> None:
    call = CallContext("notes", "1.0.0", "r1", traceparent="00-abc-def-01")
    host = _host(_capability(backend), _plugin("notes", "notes.reindex"), call)
    reply = host("queue_enqueue", type="notes.reindex", payload={"all": True}, priority="high", delay_ms=1500)
    assert reply == {"id": "j1", "created": True}
    job = backend.jobs["j1"]
    assert (job.type, job.payload, job.priority, job.run_at) == ("notes.reindex", {"all": True}, Priority.HIGH, 1001.5)
    assert (job.owner, job.traceparent, job.max_retries) == ("notes", "00-abc-def-01", BOUNDS.default_max_retries)
    assert call.may_have_saved


def test_another_plugins_job_type_is_forbidden_and_enqueues_nothing(backend: MemoryQueueBackend) -> None:
    host = _host(_capability(backend), _plugin("notes", "notes.reindex"))
    reply = host("queue_enqueue", type="mail.send")
    assert code(reply) == "FORBIDDEN"
    assert "may not enqueue job type 'mail.send'" in reply["error"]["message"]
    assert "capabilities.queue.extra_types" in reply["error"]["message"]
    assert backend.jobs == {}


def test_the_operator_can_grant_extra_job_types_to_one_plugin(backend: MemoryQueueBackend) -> None:
    capability = _capability(backend, {"billing": ["mail.send"]})
    assert _host(capability, _plugin("billing"))("queue_enqueue", type="mail.send")["created"] is True
    assert code(_host(capability, _plugin("notes"))("queue_enqueue", type="mail.send")) == "FORBIDDEN"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"Bad Name": ["a.b"]}, "is not a plugin name"),
        ({"billing": ["mail.*"]}, "which is not a job type"),
        ({"billing": ["Mail Send"]}, "which is not a job type"),
    ],
)
def test_extra_types_that_are_not_names_fail_start_up(extra: dict[str, list[str]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _capability(MemoryQueueBackend(HOST_FUNCTIONS), extra)


@pytest.mark.parametrize(
    ("request_", "expected", "message"),
    [
        ({}, "VALIDATION_FAILED", "'type' is required"),
        ({"type": 7}, "VALIDATION_FAILED", "'type' must be a string"),
        ({"type": "t.a", "priority": "urgent"}, "VALIDATION_FAILED", "unknown priority 'urgent'"),
        ({"type": "t.a", "priority": 1}, "VALIDATION_FAILED", "'priority' must be one of"),
        ({"type": "t.a", "delay_ms": -1}, "VALIDATION_FAILED", "delay_ms must be a non-negative integer"),
        ({"type": "t.a", "delay_ms": 1.5}, "VALIDATION_FAILED", "'delay_ms' must be a non-negative integer"),
        ({"type": "t.a", "delay_ms": 60_001}, "VALIDATION_FAILED", "at most 60000 (queue.max_delay_s)"),
        ({"type": "t.a", "max_retries": 6}, "VALIDATION_FAILED", "max_retries must be an integer 0-5"),
        ({"type": "t.a", "max_retries": True}, "VALIDATION_FAILED", "'max_retries' must be an integer"),
        ({"type": "t.a", "dedupe_key": ""}, "VALIDATION_FAILED", "dedupe_key must be 1-"),
        ({"type": "t.a", "dedupe_key": "k" * 248}, "VALIDATION_FAILED", "dedupe_key must be 1-247 bytes"),
        ({"type": "t.a", "payload": "x" * 300}, "PAYLOAD_TOO_LARGE", "the limit is 256 (queue.max_payload_bytes)"),
        ({"type": "t.a", "delay": 5}, "VALIDATION_FAILED", "does not take ['delay']"),
    ],
)
def test_bad_or_oversized_requests_are_refused_with_a_client_error_naming_the_bound(
    backend: MemoryQueueBackend, request_: dict[str, Any], expected: str, message: str
) -> None:
    reply = _host(_capability(backend), _plugin("t", "t.a"))("queue_enqueue", **request_)
    assert code(reply) == expected, reply
    assert message in reply["error"]["message"]
    assert backend.jobs == {}


def test_the_largest_allowed_dedupe_key_and_payload_are_accepted(backend: MemoryQueueBackend) -> None:
    host = _host(_capability(backend), _plugin("t", "t.a"))
    # "plugin:t:" takes 9 of the 256 bytes.
    assert host("queue_enqueue", type="t.a", dedupe_key="k" * 247, payload="x" * 254)["created"] is True


def test_a_dedupe_key_returns_the_plugins_existing_job_but_never_another_plugins(backend: MemoryQueueBackend) -> None:
    capability = _capability(backend, {"other": ["t.a"]})
    mine, theirs = _host(capability, _plugin("t", "t.a")), _host(capability, _plugin("other"))
    first = mine("queue_enqueue", type="t.a", dedupe_key="once")
    assert mine("queue_enqueue", type="t.a", dedupe_key="once", fresh_call=True) == {
        "id": first["id"],
        "created": False,
    }
    assert theirs("queue_enqueue", type="t.a", dedupe_key="once") == {"id": "j2", "created": True}


def test_status_shows_the_plugins_own_job(backend: MemoryQueueBackend) -> None:
    host = _host(_capability(backend), _plugin("t", "t.a"))
    job_id = host("queue_enqueue", type="t.a", payload=[1])["id"]
    job = host("queue_status", id=job_id)["job"]
    assert (job["id"], job["type"], job["state"], job["priority"], job["owner"]) == (
        job_id,
        "t.a",
        "queued",
        "normal",
        "t",
    )


def test_status_of_another_plugins_job_is_not_found_like_a_missing_one(backend: MemoryQueueBackend) -> None:
    capability = _capability(backend, {"other": ["t.a"]})
    theirs = _host(capability, _plugin("other"))("queue_enqueue", type="t.a")["id"]
    mine = _host(capability, _plugin("t", "t.a"))
    foreign, missing = mine("queue_status", id=theirs), mine("queue_status", id="j999")
    assert code(foreign) == code(missing) == "NOT_FOUND"
    assert foreign["error"]["message"].replace(theirs, "?") == missing["error"]["message"].replace("j999", "?")
    assert code(mine("queue_status", id="")) == code(mine("queue_status")) == "VALIDATION_FAILED"


def test_one_plugin_call_may_enqueue_at_most_max_enqueues_per_call(backend: MemoryQueueBackend) -> None:
    host = _host(_capability(backend), _plugin("t", "t.a"))
    for _ in range(BOUNDS.max_enqueues_per_call):
        assert host("queue_enqueue", type="t.a")["created"] is True
    over = host("queue_enqueue", type="t.a")
    assert code(over) == "RATE_LIMITED"
    assert "at most 3 times (queue.max_enqueues_per_call)" in over["error"]["message"]
    assert len(backend.jobs) == 3
    assert host("queue_enqueue", type="t.a", fresh_call=True)["created"] is True  # the next call has its own budget


def test_without_a_queue_the_host_answers_service_unavailable() -> None:
    capability = QueueCapability.from_config(_config(), None)
    reply = _host(capability, _plugin("t", "t.a"))("queue_enqueue", type="t.a")
    assert code(reply) == "SERVICE_UNAVAILABLE"


def test_a_request_full_of_unknown_fields_is_refused_with_a_message_that_does_not_grow_with_it(
    backend: MemoryQueueBackend,
) -> None:
    request = {"type": "t.a", **{f"{i:04d}" + "x" * 1000: i for i in range(500)}}
    reply = _host(_capability(backend), _plugin("t", "t.a"))("queue_enqueue", **request)
    assert code(reply) == "VALIDATION_FAILED" and "queue_enqueue does not take ['0000xxx" in reply["error"]["message"]
    assert len(reply["error"]["message"]) < 400


def test_an_unknown_key_under_capabilities_queue_fails_start_up_naming_it() -> None:
    config = ArcanaConfig(capabilities={"queue": {"extra_typez": {}}})
    with pytest.raises(ConfigError, match=r"unknown config key 'capabilities\.queue\.extra_typez'"):
        QueueCapability.from_config(config, None)
