"""``event_emit`` as a plugin calls it: granted topics only, never the kernel's, bounded, with who and trace."""

from __future__ import annotations

import json
from typing import Any

import pytest

from arcana.config import ArcanaConfig, QueueConfig
from arcana.errors import ConfigError
from arcana.manifest import Manifest, parse_manifest
from arcana.queue.jobs import JobQueue
from arcana.queue.subscriptions import reaches_kernel
from arcana.types import CallContext, CapabilityRefused, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.events import EventsCapability
from arcana_host.events.topics import compile_pattern
from arcana_host.queue import QueueCapability
from arcana_host.registry import check_grants
from queue_fakes import HOST_FUNCTIONS, Emitted, MemoryQueueBackend, RecordingBus

CONFIG = ArcanaConfig(queue=QueueConfig(max_payload_bytes=128, max_enqueues_per_call=3))


def _plugin(*patterns: str, name: str = "notes") -> PluginSpec:
    return PluginSpec(Manifest(name, "1.0.0", capabilities={"events": tuple(patterns)}), frozenset({"events"}))


def _call(principal: dict[str, Any] | None = None) -> CallContext:
    return CallContext("notes", "1.0.0", "r1", principal=principal, traceparent="00-trace-span-01")


def _emit(bus: RecordingBus, plugin: PluginSpec, call: CallContext, **request: Any) -> dict[str, Any]:
    linked = link_capability(EventsCapability.from_config(CONFIG, bus), plugin)
    return json.loads(linked["event_emit"].call(call, json.dumps(request).encode()))  # type: ignore[no-any-return]


def code(reply: dict[str, Any]) -> str | None:
    return reply.get("error", {}).get("code")


def test_a_granted_topic_is_emitted_with_the_plugin_the_principal_and_the_trace() -> None:
    bus, call = RecordingBus(), _call({"sub": "alice", "roles": ["user"]})
    assert _emit(bus, _plugin("note.*"), call, topic="note.created", payload={"id": "n1"}) == {}
    assert bus.emitted == [Emitted("note.created", {"id": "n1"}, "notes", "alice", "00-trace-span-01")]
    assert call.may_have_saved


def test_without_a_principal_or_a_payload_the_event_has_none_and_an_empty_object() -> None:
    bus = RecordingBus()
    assert _emit(bus, _plugin("note.*"), _call(), topic="note.a.b") == {}
    assert bus.emitted == [Emitted("note.a.b", {}, "notes", None, "00-trace-span-01")]


@pytest.mark.parametrize("topic", ["user.created", "notes.created", "note"])
def test_a_topic_matching_none_of_the_manifest_patterns_is_forbidden(topic: str) -> None:
    bus = RecordingBus()
    reply = _emit(bus, _plugin("note.*"), _call(), topic=topic)
    assert (
        code(reply) == "FORBIDDEN" and "matches none of its capabilities.events patterns" in reply["error"]["message"]
    )
    assert bus.emitted == []


@pytest.mark.parametrize("topic", ["auth.login", "plugin.loaded", "admin.user_changed"])
def test_kernel_topics_are_forbidden_even_to_a_plugin_granted_every_topic(topic: str) -> None:
    bus = RecordingBus()
    reply = _emit(bus, _plugin("*"), _call(), topic=topic)
    assert code(reply) == "FORBIDDEN" and "is a kernel topic" in reply["error"]["message"]
    assert bus.emitted == []


@pytest.mark.parametrize(
    ("request_", "expected", "message"),
    [
        ({}, "VALIDATION_FAILED", "'topic' must be dotted lowercase words"),
        ({"topic": "note.*"}, "VALIDATION_FAILED", "'topic' must be dotted lowercase words"),
        ({"topic": "Note.Created"}, "VALIDATION_FAILED", "'topic' must be dotted lowercase words"),
        ({"topic": "note." + "a" * 200}, "VALIDATION_FAILED", "at most 200 characters"),
        ({"topic": "note.x", "payload": [1]}, "VALIDATION_FAILED", "'payload' must be a JSON object"),
        ({"topic": "note.x", "data": {}}, "VALIDATION_FAILED", "does not take ['data']"),
        (
            {"topic": "note.x", "payload": {"t": "x" * 200}},
            "PAYLOAD_TOO_LARGE",
            "limit is 128 (queue.max_payload_bytes)",
        ),
    ],
)
def test_bad_or_oversized_emits_are_refused_with_a_client_error(
    request_: dict[str, Any], expected: str, message: str
) -> None:
    bus = RecordingBus()
    reply = _emit(bus, _plugin("note.*"), _call(), **request_)
    assert code(reply) == expected and message in reply["error"]["message"], reply
    assert bus.emitted == []


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        ((), "lists no topics"),
        (("Note.*",), "'Note.*' is not a topic pattern"),
        (("note..x",), "'note..x' is not a topic pattern"),
        (("auth.*",), "'auth.*' is a kernel topic"),
    ],
)
def test_a_manifest_with_patterns_that_are_not_patterns_is_refused_at_load(
    patterns: tuple[str, ...], message: str
) -> None:
    with pytest.raises(CapabilityRefused, match=message.replace(".", r"\.").replace("*", r"\*")):
        EventsCapability.from_config(CONFIG, RecordingBus()).configure(_plugin(*patterns))


def test_events_true_without_a_list_is_refused_at_load() -> None:
    spec = PluginSpec(Manifest("p", "1.0.0", capabilities={"events": True}), frozenset({"events"}))
    with pytest.raises(CapabilityRefused, match="lists no topics"):
        EventsCapability.from_config(CONFIG, RecordingBus()).configure(spec)


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("*", "anything.at.all", True),
        ("note.*", "note.created", True),
        ("note.*", "note.a.b", True),
        ("note.*", "note", False),
        ("note.*", "notes.created", False),
        ("*.created", "user.created", True),
        ("note.created", "note.created", True),
        ("note.created", "note.createdx", False),
        ("a-b_c", "a-b_c", True),
    ],
)
def test_topic_patterns_match_any_run_of_characters_for_a_star(pattern: str, topic: str, matches: bool) -> None:
    assert bool(compile_pattern(pattern).fullmatch(topic)) is matches


def test_emits_and_enqueues_share_one_budget_per_plugin_call() -> None:
    bus, backend, call = RecordingBus(), MemoryQueueBackend(HOST_FUNCTIONS), _call()
    spec = PluginSpec(
        Manifest("notes", "1.0.0", capabilities={"events": ("note.*",), "queue": True}, jobs=()),
        frozenset({"events", "queue"}),
    )
    config = ArcanaConfig(
        queue=QueueConfig(max_enqueues_per_call=3), capabilities={"queue": {"extra_types": {"notes": ["n.x"]}}}
    )
    emit = link_capability(EventsCapability.from_config(config, bus), spec)["event_emit"]
    enqueue = link_capability(QueueCapability.from_config(config, JobQueue(config.queue, backend)), spec)[
        "queue_enqueue"
    ]
    replies = [
        json.loads(emit.call(call, b'{"topic": "note.a"}')),
        json.loads(enqueue.call(call, b'{"type": "n.x"}')),
        json.loads(emit.call(call, b'{"topic": "note.b"}')),
        json.loads(enqueue.call(call, b'{"type": "n.x"}')),
        json.loads(emit.call(call, b'{"topic": "note.c"}')),
    ]
    assert [code(r) for r in replies] == [None, None, None, "RATE_LIMITED", "RATE_LIMITED"]
    assert len(bus.emitted) == 2 and len(backend.jobs) == 1


def test_without_a_bus_the_host_answers_service_unavailable() -> None:
    linked = link_capability(EventsCapability.from_config(CONFIG, None), _plugin("note.*"))
    assert code(json.loads(linked["event_emit"].call(_call(), b'{"topic": "note.x"}'))) == "SERVICE_UNAVAILABLE"


def test_a_key_under_capabilities_events_fails_start_up_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'capabilities\.events\.topics'"):
        EventsCapability.from_config(ArcanaConfig(capabilities={"events": {"topics": ["x"]}}), RecordingBus())


# ---------------------------------------------------------------- who may hear the kernel's events


@pytest.mark.parametrize(
    ("pattern", "reaches"),
    [
        ("*", True),
        ("*.login", True),
        ("a*", True),
        ("auth.*", True),
        ("auth.login", True),
        ("plugin.loaded", True),
        ("admin.*", True),
        ("note.*", False),
        ("auth", False),
        ("authors.*", False),
        ("notes.auth.*", False),
    ],
)
def test_a_pattern_reaches_the_kernel_topics_only_when_one_could_match_it(pattern: str, reaches: bool) -> None:
    assert reaches_kernel(pattern) is reaches


def test_subscribing_to_kernel_topics_needs_the_events_kernel_request_and_the_operator_grant() -> None:
    toml = '[plugin]\nname = "spy"\nversion = "1.0.0"\n[[subscribe]]\ntopic = "*"\nhandler = "on_event"\n'
    problems = check_grants(parse_manifest(toml), frozenset({"log"}))
    assert [p.field for p in problems] == ["subscribe[0].topic"]
    assert "events.kernel" in problems[0].fix
    asked = toml.replace("[[subscribe]]", '[capabilities]\n"events.kernel" = true\n[[subscribe]]')
    refused = check_grants(parse_manifest(asked), frozenset({"log"}))
    assert [p.field for p in refused] == ["capabilities.events.kernel"]
    assert check_grants(parse_manifest(asked), frozenset({"log", "events.kernel"})) == []


def test_subscribing_to_plugin_topics_needs_no_grant() -> None:
    toml = '[plugin]\nname = "fan"\nversion = "1.0.0"\n[[subscribe]]\ntopic = "note.*"\nhandler = "on_note"\n'
    assert check_grants(parse_manifest(toml), frozenset({"log"})) == []
