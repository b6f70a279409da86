"""The notes plugin, on the author test harness (docs/testing.md): CRUD per signed-in user, admins see all,
versions guard updates, the store holds the notes, and every change is a note.* event.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from arcana.errors import PluginLoadError
from arcana.testing import HarnessFactory, PluginHarness

# The committed build: the plugin's tests check what ships (tests/sdk/test_build.py checks it matches the source).
NOTES = Path(__file__).resolve().parent.parent / "notes.wasm"


@pytest.fixture
def notes(arcana_plugin: HarnessFactory) -> PluginHarness:
    return arcana_plugin(NOTES)


def test_every_route_needs_a_signed_in_user(notes: PluginHarness) -> None:
    for method, path in [("GET", "/api/v1/notes"), ("POST", "/api/v1/notes"), ("GET", "/api/v1/notes/n1")]:
        r = notes.request(method, path, json={"title": "t"} if method == "POST" else None)
        assert (r.status, r.error_code, r.headers.get("www-authenticate")) == (401, "UNAUTHORIZED", "Bearer")


def test_create_then_read_update_and_delete(notes: PluginHarness) -> None:
    notes.login("ada", roles=["user"])
    created = notes.post("/api/v1/notes", json={"title": "first", "body": "text", "tags": ["a"]})
    note = created.json()
    assert created.status == 201 and created.headers["location"] == f"/api/v1/notes/{note['id']}"
    assert (note["title"], note["body"], note["tags"], note["owner"], note["version"]) == (
        "first",
        "text",
        ["a"],
        "ada",
        1,
    )
    assert notes.get(f"/api/v1/notes/{note['id']}").json()["title"] == "first"
    updated = notes.put(f"/api/v1/notes/{note['id']}", json={"title": "second", "version": 1})
    assert updated.status == 200 and updated.json()["version"] == 2
    stale = notes.put(f"/api/v1/notes/{note['id']}", json={"title": "third", "version": 1})
    assert stale.status == 409 and stale.error_code == "CONFLICT"
    assert notes.delete(f"/api/v1/notes/{note['id']}?version=2").status == 204
    assert notes.get(f"/api/v1/notes/{note['id']}").error_code == "NOT_FOUND"


def test_a_note_is_kept_in_the_store_under_its_owner(notes: PluginHarness) -> None:
    note = notes.post("/api/v1/notes", json={"title": "kept"}, as_user="ada").json()
    stored = notes.store.get("notes", note["id"])
    assert stored is not None and (stored["title"], stored["owner"]) == ("kept", "ada")


def test_seeded_notes_are_listed_for_their_owner_only(notes: PluginHarness) -> None:
    notes.store.put("notes", "n-ada", {"title": "mine", "body": "", "tags": ["x"], "owner": "ada"})
    notes.store.put("notes", "n-bob", {"title": "his", "body": "", "tags": ["x"], "owner": "bob"})
    listed = notes.get("/api/v1/notes", as_user="ada").json()
    assert [n["id"] for n in listed["items"]] == ["n-ada"] and listed["total"] == 1
    assert notes.get("/api/v1/notes/n-bob", as_user="ada").error_code == "NOT_FOUND"  # someone else's: as if absent


def test_an_admin_sees_and_edits_every_note_and_the_owner_stays(notes: PluginHarness) -> None:
    notes.store.put("notes", "n-bob", {"title": "his", "body": "", "tags": [], "owner": "bob"})
    notes.store.put("notes", "n-eve", {"title": "hers", "body": "", "tags": [], "owner": "eve"})
    notes.login("root", roles=["admin"])
    assert {n["id"] for n in notes.get("/api/v1/notes").json()["items"]} == {"n-bob", "n-eve"}
    edited = notes.put("/api/v1/notes/n-bob", json={"title": "fixed", "version": 1}).json()
    assert (edited["title"], edited["owner"]) == ("fixed", "bob")


def test_tag_filter_and_sort(notes: PluginHarness) -> None:
    notes.login("ada")
    for title, tags in [("b", ["work"]), ("a", ["work", "home"]), ("c", ["home"])]:
        notes.post("/api/v1/notes", json={"title": title, "tags": tags})
    work = notes.get("/api/v1/notes?tag=work&sort=title&order=asc").json()
    assert [n["title"] for n in work["items"]] == ["a", "b"]
    assert notes.get("/api/v1/notes?sort=size").error_code == "VALIDATION_FAILED"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [({}, "/body/title"), ({"title": ""}, "/body/title"), ({"title": "t", "tags": [1]}, "/body/tags/0")],
)
def test_a_bad_note_is_refused_at_the_edge_with_its_field(
    notes: PluginHarness, body: dict[str, object], pointer: str
) -> None:
    r = notes.post("/api/v1/notes", json=body, as_user="ada")
    assert r.status == 400 and r.error_code == "VALIDATION_FAILED"
    assert [f["pointer"] for f in r.json()["fields"]] == [pointer]
    # Refused by the schema (schemas/note-input.json) before the plugin ran: it logged nothing, stored nothing.
    assert notes.events == [] and notes.store.query("notes") == [] and notes.logs == []


def test_every_bad_field_is_listed_with_its_reason(notes: PluginHarness) -> None:
    r = notes.post("/api/v1/notes", json={"body": 3, "tags": ["ok", ""]}, as_user="ada")
    fields = {f["pointer"]: f["reason"] for f in r.json()["fields"]}
    assert set(fields) == {"/body/title", "/body/body", "/body/tags/1"}
    assert fields["/body/title"] == "is required" and "string" in fields["/body/body"]


def test_a_query_parameter_of_the_wrong_type_is_refused_before_the_plugin(notes: PluginHarness) -> None:
    r = notes.get("/api/v1/notes?page=two", as_user="ada")
    assert (r.status, r.json()["fields"]) == (400, [{"pointer": "/query/page", "reason": "must be an integer"}])
    assert notes.logs == []


def test_what_the_schema_cannot_say_the_plugin_still_checks(notes: PluginHarness) -> None:
    # A title of 200 characters but 400 bytes: the schema counts characters, the plugin bytes.
    r = notes.post("/api/v1/notes", json={"title": "é" * 200}, as_user="ada")
    assert r.status == 400 and "title must be" in r.json()["message"] and "fields" not in r.json()


def test_each_change_emits_its_event_with_the_principal(notes: PluginHarness) -> None:
    notes.login("ada")
    note = notes.post("/api/v1/notes", json={"title": "t"}).json()
    notes.put(f"/api/v1/notes/{note['id']}", json={"title": "u", "version": 1})
    notes.delete(f"/api/v1/notes/{note['id']}")
    assert [(e.topic, e.payload, e.principal) for e in notes.events] == [
        ("note.created", {"id": note["id"], "owner": "ada", "title": "t"}, "ada"),
        ("note.updated", {"id": note["id"], "owner": "ada", "title": "u"}, "ada"),
        ("note.deleted", {"id": note["id"], "owner": "ada"}, "ada"),
    ]
    assert [line.message for line in notes.logs] == ["note created"]
    assert notes.jobs == []  # notes enqueues no jobs of its own


def test_without_the_events_grant_the_plugin_is_refused(arcana_plugin: HarnessFactory) -> None:
    with pytest.raises(PluginLoadError, match=r"capabilities\.events: requested but not granted"):
        arcana_plugin(NOTES, grants=["log", "store"])
