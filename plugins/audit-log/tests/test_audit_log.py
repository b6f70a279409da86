"""The audit-log plugin, on the author test harness (docs/testing.md): every event it hears is one entry in
its store, at most once, and admins list them with filters.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arcana.testing import HarnessFactory, PluginHarness

# The committed build: the plugin's tests check what ships (tests/sdk/test_build.py checks it matches the source).
AUDIT = Path(__file__).resolve().parent.parent / "audit-log.wasm"


@pytest.fixture
def audit(arcana_plugin: HarnessFactory) -> PluginHarness:
    return arcana_plugin(AUDIT)


def test_a_published_event_is_recorded_under_its_id(audit: PluginHarness) -> None:
    [outcome] = audit.publish("note.created", {"id": "n1", "title": "t"}, principal="ada", source="notes")
    assert outcome.ok and outcome.handler == "on_event"
    [entry] = audit.store.query("audit")
    assert (entry["topic"], entry["source"], entry["principal"], entry["payload"]) == (
        "note.created",
        "notes",
        "ada",
        {"id": "n1", "title": "t"},
    )


def test_the_same_event_delivered_twice_is_one_entry(audit: PluginHarness) -> None:
    # Delivery is at least once: a redelivery carries the same event id, and CONFLICT means "already recorded".
    first = audit.publish("note.deleted", {"id": "n1"}, id="e-1")
    again = audit.publish("note.deleted", {"id": "n1"}, id="e-1")
    assert [o.ok for o in first + again] == [True, True]
    assert [e["id"] for e in audit.store.query("audit")] == ["e-1"]


def test_the_kernels_own_events_reach_it_through_the_queue(audit: PluginHarness) -> None:
    # Loading the plugin was a plugin.loaded event, waiting in the kernel's queue for on_event.
    outcomes = audit.run_queued()
    assert [o.type for o in outcomes] == ["plugin.loaded"] and outcomes[0].ok
    [entry] = audit.store.query("audit")
    assert entry["payload"] == {"plugin": "audit-log", "version": "1.0.0"}


def test_admins_list_entries_filtered_by_topic_prefix_and_principal(audit: PluginHarness) -> None:
    audit.publish("note.created", {"id": "n1"}, principal="ada")
    audit.publish("note.updated", {"id": "n1"}, principal="bob")
    audit.publish("auth.login", {"user_id": "ada"}, principal="ada", source="kernel")
    audit.login("root", roles=["admin"])
    notes = audit.get("/api/v1/audit?topic=note.*").json()
    assert sorted(e["topic"] for e in notes["items"]) == ["note.created", "note.updated"]
    by_ada = audit.get("/api/v1/audit?principal=ada").json()
    assert sorted(e["topic"] for e in by_ada["items"]) == ["auth.login", "note.created"]


def test_the_listing_is_for_admins_only(audit: PluginHarness) -> None:
    assert audit.get("/api/v1/audit").error_code == "UNAUTHORIZED"
    assert audit.get("/api/v1/audit", as_user="ada", roles=["user"]).error_code == "FORBIDDEN"
    assert audit.get("/api/v1/audit?since=soon", as_user="root", roles=["admin"]).error_code == "VALIDATION_FAILED"
