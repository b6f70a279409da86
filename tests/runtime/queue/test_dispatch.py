"""Job and event envelopes, and what a handler's answer means, without a worker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from arcana.errors import ArcanaError, ErrorCode, PluginFailed, ServiceUnavailable, ValidationFailed
from arcana.queue.dispatch import envelope, kind_of, parse_output
from arcana.queue.types import Job, JobState, Priority


def job(**changes: Any) -> Job:
    values: dict[str, Any] = {
        "id": "j1",
        "type": "t.x",
        "payload": {"a": [1]},
        "priority": Priority.CRITICAL,
        "state": JobState.RUNNING,
        "attempts": 2,
        "max_retries": 3,
        "run_at": 1.0,
        "created_at": 1.0,
        "updated_at": 1.0,
        "traceparent": "tp",
    }
    return Job(**(values | changes))


def test_the_job_envelope_carries_id_type_payload_attempt_and_priority() -> None:
    data = json.loads(envelope(job(), "job", "rid"))
    assert data == {
        "kind": "job",
        "job": {"id": "j1", "type": "t.x", "payload": {"a": [1]}, "attempt": 2, "priority": "critical"},
        "request_id": "rid",
        "traceparent": "tp",
    }


def test_the_event_envelope_carries_the_event_object_as_enqueued() -> None:
    event = {"id": "e", "topic": "t.x", "source": "kernel", "time": 2.0, "payload": {}, "principal": None}
    delivery = job(payload=event, target="audit/on_any")
    assert kind_of(delivery) == "event"
    assert json.loads(envelope(delivery, "event", "rid")) == {
        "kind": "event",
        "event": event,
        "request_id": "rid",
        "traceparent": "tp",
    }


def test_a_payload_too_deep_to_send_is_a_validation_failure() -> None:
    deep: Any = []
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(ValidationFailed):
        envelope(job(payload=deep), "job", "rid")


@pytest.mark.parametrize(
    ("output", "result"), [(b"{}", None), (b'{"result": {"n": 1}}', {"n": 1}), (b'{"result": null}', None)]
)
def test_an_empty_answer_or_a_result_completes_a_job(output: bytes, result: Any) -> None:
    assert parse_output("p", "job", output, 100) == result


def test_a_plugin_error_keeps_its_code_and_message() -> None:
    with pytest.raises(ArcanaError) as caught:
        parse_output("p", "job", b'{"error": {"code": "NOT_FOUND", "message": "gone"}}', 100)
    assert (caught.value.code, caught.value.message) == (ErrorCode.NOT_FOUND, "gone")
    with pytest.raises(ServiceUnavailable):
        parse_output("p", "event", b'{"error": {"code": "SERVICE_UNAVAILABLE"}}', 100)


@pytest.mark.parametrize(
    ("kind", "output"),
    [
        ("job", b"not json"),
        ("job", b"[]"),
        ("job", b'{"status": 200}'),
        ("job", b'{"error": "no"}'),
        ("job", b'{"error": {"code": "MADE_UP"}}'),
        ("event", b'{"result": 1}'),
    ],
)
def test_a_malformed_answer_is_plugin_failed(kind: Any, output: bytes) -> None:
    with pytest.raises(PluginFailed):
        parse_output("p", kind, output, 100)


def test_a_result_over_the_bound_is_refused() -> None:
    assert parse_output("p", "job", b'{"result": "' + b"x" * 98 + b'"}', 100) == "x" * 98
    with pytest.raises(PluginFailed, match="max_payload_bytes"):
        parse_output("p", "job", b'{"result": "' + b"x" * 99 + b'"}', 100)
