"""The event bus: fan-out to matching [[subscribe]] handlers through the queue, kernel events, and failure isolation."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from arcana.auth.service import AuthService
from arcana.config import QueueConfig, load_config
from arcana.database import Database
from arcana.errors import PayloadTooLarge
from arcana.events import EventBus
from arcana.manifest import parse_manifest
from arcana.queue.jobs import JobQueue
from arcana.queue.subscriptions import SubscriptionTable, topic_matches
from fakes import FakePlugin, Kernels, reply, write_plugin
from queue_fakes import SCHEDULER, MemoryQueueBackend


def subscriber(name: str, *subscriptions: tuple[str, str], kernel_events: bool = False) -> str:
    """Manifest TOML for plugin ``name`` with [[subscribe]] (topic, handler) entries."""
    parts = [f'[plugin]\nname = "{name}"\nversion = "1.0.0"\n']
    if kernel_events:  # hearing auth.*, plugin.* and admin.* is asked for, and granted, by name
        parts.append('[capabilities]\n"events.kernel" = true\n')
    parts += [f'[[subscribe]]\ntopic = "{topic}"\nhandler = "{handler}"\n' for topic, handler in subscriptions]
    return "\n".join(parts)


def table(*manifests: str) -> SubscriptionTable:
    return SubscriptionTable(parse_manifest(m) for m in manifests)


def bus_over(backend: MemoryQueueBackend, config: QueueConfig | None = None) -> EventBus:
    return EventBus(JobQueue(config or QueueConfig(), backend, clock=lambda: 1000.0))


@pytest.mark.parametrize(
    ("pattern", "topic", "matches"),
    [
        ("note.*", "note.created", True),
        ("note.*", "note.a.b", True),
        ("note.*", "note", False),
        ("note.*", "notes.created", False),
        ("*", "auth.login", True),
        ("*.created", "note.created", True),
        ("*.created", "note.updated", False),
        ("auth.login", "auth.login", True),
        ("auth.login", "auth.login_failed", False),
        ("a*c", "abbbc", True),
    ],
)
def test_a_star_matches_any_run_of_characters_including_dots(pattern: str, topic: str, matches: bool) -> None:
    assert topic_matches(pattern, topic) is matches


def test_an_event_reaches_only_the_handlers_whose_pattern_matches() -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    bus = bus_over(backend)
    bus.use(
        table(
            subscriber("audit", ("*", "on_any")),
            subscriber("notes", ("note.*", "on_note"), ("user.*", "on_user")),
            subscriber("mail", ("auth.login", "on_login")),
        )
    )
    bus.emit("note.created", {"id": "n-1"}, source="notes", principal="u-7", traceparent="00-abc-def-01")
    jobs = backend.specs()
    assert sorted(j.target for j in jobs) == ["audit/on_any", "notes/on_note"]
    event = jobs[0].payload
    assert set(event) == {"id", "topic", "source", "time", "payload", "principal"}
    assert (event["topic"], event["source"], event["payload"], event["principal"]) == (
        "note.created",
        "notes",
        {"id": "n-1"},
        "u-7",
    )
    for job in jobs:
        assert (job.type, job.owner, job.traceparent) == ("note.created", "notes", "00-abc-def-01")
        assert job.dedupe_key == f"event:{event['id']}:{job.target}"
        assert job.payload == event


def test_a_handler_matched_by_two_patterns_gets_one_delivery() -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    bus = bus_over(backend)
    bus.use(table(subscriber("audit", ("*", "on_any"), ("note.*", "on_any"))))
    bus.emit("note.created", {})
    assert [j.target for j in backend.specs()] == ["audit/on_any"]


def test_an_event_nobody_subscribes_to_enqueues_nothing() -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    bus = bus_over(backend)
    bus.use(table(subscriber("notes", ("note.*", "on_note"))))
    bus.emit("auth.login", {"user_id": "u-1"})
    assert backend.specs() == [] and backend.calls.total() == 0


def test_a_swapped_table_is_used_from_the_next_emit() -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    bus = bus_over(backend)
    bus.emit("note.created", {})
    bus.use(table(subscriber("notes", ("note.*", "on_note"))))
    bus.emit("note.created", {})
    bus.use(SubscriptionTable())
    bus.emit("note.created", {})
    assert [j.target for j in backend.specs()] == ["notes/on_note"]


def test_a_backend_outage_is_logged_with_the_event_id_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    backend.down = True
    seen: list[dict[str, Any]] = []
    bus = bus_over(backend)
    bus.subscribe(seen.append)
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    with caplog.at_level(logging.ERROR, "arcana.events"):
        bus.emit("auth.login", {"user_id": "u-1"})
    assert backend.calls.total() == 1 and backend.specs() == []
    assert seen and seen[0]["id"] in caplog.text and "audit/on_any" in caplog.text


def test_a_failing_listener_stops_neither_the_others_nor_the_delivery(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    seen: list[str] = []

    def broken(_event: dict[str, Any]) -> None:
        raise RuntimeError("listener bug")

    bus = bus_over(backend)
    bus.subscribe(broken)
    bus.subscribe(lambda e: seen.append(e["topic"]))
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    with caplog.at_level(logging.ERROR, "arcana.events"):
        bus.emit("auth.logout", {"user_id": "u-1"})
    assert seen == ["auth.logout"]
    assert [j.target for j in backend.specs()] == ["audit/on_any"]
    assert "event listener failed for auth.logout" in caplog.text


def test_a_payload_over_the_queue_bound_is_refused_before_anyone_sees_it() -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    seen: list[dict[str, Any]] = []
    bus = bus_over(backend, QueueConfig(max_payload_bytes=256))
    bus.subscribe(seen.append)
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    with pytest.raises(PayloadTooLarge, match=r"queue\.max_payload_bytes"):
        bus.emit("note.created", {"text": "x" * 300}, source="notes")
    assert seen == [] and backend.specs() == []


def test_without_a_queue_the_bus_logs_and_calls_listeners_only() -> None:
    seen: list[dict[str, Any]] = []
    bus = EventBus()
    bus.subscribe(seen.append)
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    bus.emit("admin.user_changed", {"user_id": "u-1", "change": "created"})
    assert [e["topic"] for e in seen] == ["admin.user_changed"] and seen[0]["principal"] is None


def test_a_lazy_queue_is_opened_only_for_an_event_with_subscribers() -> None:
    backend, opened = MemoryQueueBackend(SCHEDULER), []

    def open_queue() -> JobQueue:
        opened.append(1)
        return JobQueue(QueueConfig(), backend)

    bus = EventBus(open_queue)
    bus.emit("auth.login", {"user_id": "u-1"})
    assert opened == []
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    bus.emit("auth.login", {"user_id": "u-1"})
    assert opened == [1] and len(backend.specs()) == 1


def test_a_queue_that_cannot_open_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def open_queue() -> JobQueue:
        raise ImportError("No module named 'redis'")

    seen: list[dict[str, Any]] = []
    bus = EventBus(open_queue)
    bus.subscribe(seen.append)
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    with caplog.at_level(logging.ERROR, "arcana.events"):
        bus.emit("auth.logout", {"user_id": "u-1"})
    assert len(seen) == 1 and f"event {seen[0]['id']} not delivered: the queue cannot be opened" in caplog.text


def test_emit_on_the_event_loop_stores_off_it_and_flush_waits_for_it() -> None:
    backend = MemoryQueueBackend(SCHEDULER)
    bus = bus_over(backend)
    bus.use(table(subscriber("audit", ("*", "on_any"))))
    stored_on: list[str] = []
    original = backend.enqueue_many

    def recording(specs: Any, now: float) -> list[Any]:
        stored_on.append(threading.current_thread().name)
        return original(specs, now)

    backend.enqueue_many = recording  # type: ignore[method-assign]

    async def main() -> None:
        bus.emit("plugin.loaded", {"plugin": "x", "version": "1.0.0"})
        await bus.flush()

    asyncio.run(main())
    assert len(backend.specs()) == 1
    assert stored_on and stored_on[0] != "MainThread"


def test_auth_events_are_delivered_with_the_user_as_principal_and_an_outage_does_not_fail_a_login(
    tmp_path: Path, migrated_db: Path
) -> None:
    db = tmp_path / "auth.db"
    shutil.copyfile(migrated_db, db)
    config = load_config(
        None,
        environ={
            "ARCANA_DATABASE__URL": f"sqlite:///{db}",
            "ARCANA_AUTH__ARGON2_TIME_COST": "1",
            "ARCANA_AUTH__ARGON2_MEMORY_KIB": "1024",
        },
    )
    backend = MemoryQueueBackend(SCHEDULER)
    bus = bus_over(backend)
    bus.use(table(subscriber("audit", ("auth.*", "on_auth"))))
    database = Database(config.database)
    try:
        assert database.prepare() is None
        auth = AuthService(config, database, bus)
        user = auth.create_user("a@example.com", "long enough password", ["user"])
        auth.login("a@example.com", "long enough password", "10.0.0.1")
        backend.down = True
        pair = auth.login("a@example.com", "long enough password", "10.0.0.1")
        assert pair.access_token
    finally:
        database.close()
    (login,) = backend.specs()
    assert login.type == "auth.login" and login.payload["principal"] == user.id
    assert login.payload["payload"] == {"user_id": user.id, "email": "a@example.com", "address": "10.0.0.1"}


def test_plugin_events_reach_subscribers_loaded_earlier_in_the_same_scan(kernels: Kernels) -> None:
    kernels.engine.define("audit", FakePlugin({"on_plugin": reply({})}))
    kernels.engine.define("notes", FakePlugin({}))
    write_plugin(kernels.plugins, subscriber("audit", ("plugin.*", "on_plugin"), kernel_events=True))
    write_plugin(kernels.plugins, subscriber("notes"))
    kernel = kernels(GRANTS__AUDIT="[events.kernel]")
    backend = MemoryQueueBackend(SCHEDULER)
    kernel.bus.connect(JobQueue(kernel.config.queue, backend))

    async def scan() -> None:
        await kernel.sync([kernels.plugins / "audit.wasm", kernels.plugins / "notes.wasm"])
        write_plugin(kernels.plugins, subscriber("broken", ("bad topic!", "x")), file="notes")
        await kernel.sync([kernels.plugins / "notes.wasm"])
        (kernels.plugins / "notes.wasm").unlink()
        await kernel.sync([kernels.plugins / "notes.wasm"])
        await kernel.bus.flush()

    asyncio.run(scan())
    events = [(j.type, j.payload["payload"]) for j in backend.specs()]
    assert [topic for topic, _ in events] == ["plugin.loaded", "plugin.loaded", "plugin.failed", "plugin.unloaded"]
    assert events[0][1] == {"plugin": "audit", "version": "1.0.0"}
    assert events[1][1] == {"plugin": "notes", "version": "1.0.0"}
    failed = events[2][1]
    assert failed["plugin"] == "broken" and failed["source"].endswith("notes.wasm")
    assert any("subscribe[0].topic" in p for p in failed["problems"])
    assert events[3][1] == {"plugin": "notes"}
    assert {j.target for j in backend.specs()} == {"audit/on_plugin"}
