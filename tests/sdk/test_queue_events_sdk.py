"""The queue and events bindings, the job and event envelopes, notes' events and audit-log: real modules, no kernel.

Plugins run under the real Extism engine, linked by the real capability
composition from their grants, on a real store (SQLite); the queue backend
and the event bus are fakes behind their protocols (``queue_fakes``),
so these tests need neither the workers nor the bus. Event envelopes are
built here as the bus builds them; the same trail over a real server is
tests/e2e/test_audit_log.py.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arcana.config import ArcanaConfig, DatabaseConfig
from arcana.database import Database, migrate
from arcana.engine.extism_engine import ExtismEngine
from arcana.errors import Problem
from arcana.manifest import Manifest, parse_manifest
from arcana.queue.jobs import JobQueue
from arcana.types import CallContext
from arcana_host.registry import Capabilities, HostServices
from arcana_sdk.wasm_sections import MANIFEST_SECTION, read_custom_section
from conftest import FIXTURES, ROOT, build_cached
from queue_fakes import HOST_FUNCTIONS, Emitted, MemoryQueueBackend, RecordingBus

ADMIN = {"sub": "root", "roles": ["admin"]}
ALICE = {"sub": "alice", "roles": ["user"]}


@dataclass
class Loaded:
    manifest: Manifest
    instance: Any

    def call(self, handler: str, envelope: dict[str, Any], principal: dict[str, Any] | None = None) -> Any:
        """Call ``handler``; a principal is in the envelope (what the plugin reads) and the call (what hosts read)."""
        context = CallContext(self.manifest.name, self.manifest.version, "r-1", principal, traceparent="00-t-s-01")
        if principal is not None:
            envelope = {**envelope, "principal": principal}
        return json.loads(self.instance.call(handler, json.dumps(envelope).encode(), context))


class Host:
    """The kernel's host side without the kernel: capabilities on a store, a fake queue and a recording bus."""

    def __init__(self, folder: Path) -> None:
        self.database = Database(DatabaseConfig(url=f"sqlite:///{folder / 'host.db'}"))
        migrate(self.database.engine)
        self.backend, self.bus = MemoryQueueBackend(HOST_FUNCTIONS), RecordingBus()
        config = ArcanaConfig()
        jobs = JobQueue(config.queue, self.backend)
        services = HostServices(database=self.database, jobs=jobs, bus=self.bus)
        self.capabilities = Capabilities.from_config(config, services)
        self.engine = ExtismEngine()

    def load(self, wasm: bytes, grants: set[str]) -> Loaded | list[Problem]:
        section = read_custom_section(wasm, MANIFEST_SECTION)
        assert section is not None
        manifest = parse_manifest(section.decode())
        imports = self.engine.inspect(wasm).imports
        configured = self.capabilities.configure(manifest, frozenset(grants), imports)
        if isinstance(configured, list):
            return configured
        compiled = self.engine.compile(wasm, configured.functions, memory_mb=32, timeout_ms=5000)
        return Loaded(manifest, compiled.instantiate())

    def loaded(self, wasm: bytes, grants: set[str]) -> Loaded:
        done = self.load(wasm, grants)
        assert isinstance(done, Loaded), "\n".join(map(str, done))
        return done

    def close(self) -> None:
        self.capabilities.close()
        self.database.close()


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    made = Host(tmp_path)
    yield made
    made.close()


def example(name: str) -> bytes:
    return (ROOT / "plugins" / name / f"{name}.wasm").read_bytes()


def event_envelope(emitted: Emitted, *, event_id: str | None = None, at: float | None = None) -> dict[str, Any]:
    """What the bus hands a [[subscribe]] handler for one emitted event."""
    event = {
        "id": event_id or uuid.uuid4().hex,
        "topic": emitted.topic,
        "source": emitted.source,
        "time": time.time() if at is None else at,
        "payload": emitted.payload,
        "principal": emitted.principal,
    }
    return {"kind": "event", "event": event, "request_id": "d-1", "traceparent": emitted.traceparent}


def http(method: str, path: str, body: Any = None, **extra: Any) -> dict[str, Any]:
    envelope = {"kind": "http", "method": method, "path": path, "params": {}, "query": {}, "headers": {}, **extra}
    if body is not None:
        envelope["body"] = body
    return envelope


# ---------------------------------------------------------------- linking


def test_notes_links_with_store_and_events_and_is_refused_without_the_events_grant(host: Host) -> None:
    assert isinstance(host.load(example("notes"), {"log", "store", "events"}), Loaded)
    refused = host.load(example("notes"), {"log", "store"})
    assert isinstance(refused, list)
    text = "\n".join(map(str, refused))
    assert "capabilities.events: requested but not granted to 'notes'" in text
    assert "import extism:host/user::event_emit: needs capability 'events'" in text


def test_audit_log_links_with_the_store_and_is_refused_without_the_kernel_events_grant(host: Host) -> None:
    assert isinstance(host.load(example("audit-log"), {"log", "store", "events.kernel"}), Loaded)
    refused = host.load(example("audit-log"), {"log", "store"})
    assert isinstance(refused, list)
    assert "capabilities.events.kernel: requested but not granted to 'audit-log'" in "\n".join(map(str, refused))


# ---------------------------------------------------------------- notes emits, audit-log records


def test_a_note_created_updated_and_deleted_emits_one_event_each_with_the_acting_user(host: Host) -> None:
    notes = host.loaded(example("notes"), {"log", "store", "events"})
    made = notes.call("create_note", http("POST", "/api/v1/notes", {"title": "t"}), ALICE)
    assert made["status"] == 201
    note_id = made["body"]["id"]
    params = {"params": {"id": note_id}}
    assert notes.call("update_note", http("PUT", "/x", {"title": "u", "version": 1}, **params), ALICE)["status"] == 200
    assert notes.call("delete_note", http("DELETE", "/x", **params), ALICE)["status"] == 204
    assert [(e.topic, e.source, e.principal, e.traceparent) for e in host.bus.emitted] == [
        ("note.created", "notes", "alice", "00-t-s-01"),
        ("note.updated", "notes", "alice", "00-t-s-01"),
        ("note.deleted", "notes", "alice", "00-t-s-01"),
    ]
    assert [e.payload for e in host.bus.emitted] == [
        {"id": note_id, "owner": "alice", "title": "t"},
        {"id": note_id, "owner": "alice", "title": "u"},
        {"id": note_id, "owner": "alice"},
    ]


def test_audit_log_records_each_event_once_even_when_it_is_delivered_twice(host: Host) -> None:
    audit = host.loaded(example("audit-log"), {"log", "store", "events.kernel"})
    envelope = event_envelope(Emitted("auth.login", {"user_id": "u1"}, "kernel", "u1", ""), at=1_000.5)
    assert audit.call("on_event", envelope) == {}
    assert audit.call("on_event", envelope) == {}  # the redelivery: already recorded, nothing new
    page = audit.call("list_audit", http("GET", "/api/v1/audit"), ADMIN)["body"]
    assert page["total"] == 1
    entry = page["items"][0]
    assert entry["id"] == envelope["event"]["id"] and entry["version"] == 1
    assert {k: entry[k] for k in ("topic", "source", "principal", "time", "payload")} == {
        "topic": "auth.login",
        "source": "kernel",
        "principal": "u1",
        "time": 1_000.5,
        "payload": {"user_id": "u1"},
    }


def test_audit_log_filters_by_topic_principal_and_time_newest_first_in_pages(host: Host) -> None:
    audit = host.loaded(example("audit-log"), {"log", "store", "events.kernel"})
    events = [
        ("auth.login", "alice", 100.0),
        ("note.created", "alice", 200.0),
        ("note.deleted", "bob", 300.0),
        ("admin.user_changed", None, 400.0),
        ("note.created", "bob", 500.0),
    ]
    for topic, who, at in events:
        assert audit.call("on_event", event_envelope(Emitted(topic, {}, "kernel", who, ""), at=at)) == {}

    def topics(**query: str) -> list[tuple[str, float]]:
        reply = audit.call("list_audit", http("GET", "/api/v1/audit", query=query), ADMIN)
        assert reply.get("status") == 200, reply
        return [(item["topic"], item["time"]) for item in reply["body"]["items"]]

    assert [t for _, t in topics()] == [500.0, 400.0, 300.0, 200.0, 100.0]
    assert topics(topic="note.created") == [("note.created", 500.0), ("note.created", 200.0)]
    assert [t for _, t in topics(topic="note.*")] == [500.0, 300.0, 200.0]
    assert [t for _, t in topics(principal="alice")] == [200.0, 100.0]
    assert [t for _, t in topics(since="200", until="400")] == [400.0, 300.0, 200.0]
    assert [t for _, t in topics(size="2", page="2")] == [300.0, 200.0]
    bad = audit.call("list_audit", http("GET", "/api/v1/audit", query={"since": "yesterday"}), ADMIN)
    assert bad["error"]["code"] == "VALIDATION_FAILED" and "since must be a time" in bad["error"]["message"]


def test_audit_log_refuses_what_is_not_an_event(host: Host) -> None:
    audit = host.loaded(example("audit-log"), {"log", "store", "events.kernel"})
    reply = audit.call("on_event", {"kind": "job", "job": {"id": "j1", "type": "x", "payload": None}})
    assert reply["error"]["code"] == "VALIDATION_FAILED"


# ---------------------------------------------------------------- the SDK bindings and envelope readers


# The same probe in each SDK with typed bindings: Zig and AssemblyScript.
PROBES = ["queueprobe", "asqueueprobe"]


@pytest.fixture(scope="module", params=PROBES)
def queueprobe(request: pytest.FixtureRequest) -> bytes:
    return build_cached(FIXTURES / request.param).read_bytes()


def probe(loaded: Loaded, **request: Any) -> Any:
    return loaded.call("probe", http("POST", "/probe/queue", request))


@pytest.mark.toolchain
def test_enqueue_and_status_bindings_round_trip_through_the_host(host: Host, queueprobe: bytes) -> None:
    loaded = host.loaded(queueprobe, {"queue", "events"})
    made = probe(loaded, call="enqueue", type="probe.work", payload={"n": 1}, priority="high", dedupe_key="k")
    assert made["body"] == {"result": {"id": "j1", "created": True}}
    assert probe(loaded, call="enqueue", type="probe.work", dedupe_key="k")["body"]["result"]["created"] is False
    status = probe(loaded, call="status", id="j1")["body"]["result"]
    assert (status["state"], status["attempts"], status["job"]["priority"]) == ("queued", 0, "high")
    job = host.backend.jobs["j1"]
    assert (job.payload, job.owner, job.traceparent) == ({"n": 1}, loaded.manifest.name, "00-t-s-01")


@pytest.mark.toolchain
def test_bindings_return_the_hosts_errors_as_values(host: Host, queueprobe: bytes) -> None:
    loaded = host.loaded(queueprobe, {"queue", "events"})
    assert probe(loaded, call="enqueue", type="mail.send")["error"]["code"] == "FORBIDDEN"
    assert probe(loaded, call="status", id="nope")["error"]["code"] == "NOT_FOUND"
    assert probe(loaded, call="emit", topic="auth.login")["error"]["code"] == "FORBIDDEN"
    assert probe(loaded, call="emit", topic="other.x")["error"]["code"] == "FORBIDDEN"


@pytest.mark.toolchain
def test_emit_binding_sends_topic_and_payload(host: Host, queueprobe: bytes) -> None:
    loaded = host.loaded(queueprobe, {"queue", "events"})
    assert probe(loaded, call="emit", topic="probe.hello", payload={"a": [1]})["body"] == {"result": None}
    assert host.bus.emitted == [Emitted("probe.hello", {"a": [1]}, loaded.manifest.name, None, "00-t-s-01")]


@pytest.mark.toolchain
def test_envelope_readers_see_the_job_and_the_event(host: Host, queueprobe: bytes) -> None:
    loaded = host.loaded(queueprobe, {"queue", "events"})
    job = {"id": "j9", "type": "probe.work", "payload": {"x": "é"}, "attempt": 2, "priority": "low"}
    reply = loaded.call("work", {"kind": "job", "job": job, "request_id": "q-1", "traceparent": "00-a-b-01"})
    assert reply == {"result": {**job, "request_id": "q-1", "traceparent": "00-a-b-01"}}
    event = event_envelope(Emitted("probe.hi", {"k": 1}, "kernel", "u7", ""), event_id="e1", at=12.25)
    assert loaded.call("seen", event) == {"result": event["event"]}
    done = event_envelope(Emitted("probe.hi", {"done": True}, "kernel", None, ""))
    assert loaded.call("seen", done) == {}
    assert loaded.call("work", event)["error"]["code"] == "VALIDATION_FAILED"  # an event is not a job


@pytest.fixture(scope="module")
def cqueueprobe() -> bytes:
    return build_cached(FIXTURES / "cqueueprobe").read_bytes()


@pytest.mark.toolchain
def test_c_helpers_build_escaped_requests_and_return_the_hosts_reply(host: Host, cqueueprobe: bytes) -> None:
    loaded = host.loaded(cqueueprobe, {"queue", "events"})
    assert loaded.call("enqueue", http("POST", "/probe/c/enqueue"))["body"] == {"id": "j1", "created": True}
    job = host.backend.jobs["j1"]
    assert (job.payload, job.priority.label, job.max_retries) == ({"n": 1}, "high", 2)
    assert job.dedupe_key == 'plugin:cqueueprobe:k"\n'
    assert loaded.call("enqueue", http("POST", "/probe/c/enqueue"))["body"] == {"id": "j1", "created": False}
    assert loaded.call("status", http("POST", "/probe/c/status"))["body"]["job"]["state"] == "queued"
    assert loaded.call("emit", http("POST", "/probe/c/emit"))["body"] == {}
    assert host.bus.emitted == [Emitted("probe.c", {"a": [1]}, "cqueueprobe", None, "00-t-s-01")]
    refused = loaded.call("emit_quoted", http("POST", "/probe/c/emit_quoted"))["body"]["error"]
    assert refused["code"] == "VALIDATION_FAILED" and "'topic' must be" in refused["message"]
