"""Route schemas over real HTTP with the notes example: a bad body is refused at the edge with its fields, a
good one is served; in development a plugin answer that breaks its schema is logged; a hot reload of a module
with changed schemas changes what is refused."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from arcana_sdk.wasm_sections import SCHEMAS_SECTION, append_custom_section, read_custom_section, remove_custom_sections
from conftest import ROOT
from e2e.server import ArcanaServer, mint

ALICE = {"authorization": f"Bearer {mint('alice', ['user'], ttl=3600)}"}
NOTES = ROOT / "plugins" / "notes"
CONFIG: dict[str, Any] = {"grants": {"*": ["log"], "notes": ["store", "events"]}}


def folder(tmp_path: Path) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copyfile(NOTES / "notes.wasm", plugins / "notes.wasm")
    return plugins


def with_schemas(edit: Callable[[dict[str, Any]], None]) -> bytes:
    """notes.wasm with its embedded schemas changed by ``edit`` (what a rebuild after editing schemas/ gives)."""
    wasm = (NOTES / "notes.wasm").read_bytes()
    payload = read_custom_section(wasm, SCHEMAS_SECTION)
    assert payload is not None
    schemas = json.loads(payload)
    edit(schemas)
    wasm = remove_custom_sections(wasm, SCHEMAS_SECTION)
    return append_custom_section(wasm, SCHEMAS_SECTION, json.dumps(schemas).encode())


def test_a_bad_note_gets_400_with_its_fields_and_a_good_one_201(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    url = start_server(folder(tmp_path), CONFIG).url + "/api/v1/notes"
    bad = httpx.post(url, json={"title": "", "tags": "work"}, headers={**ALICE, "x-request-id": "rid-bad-note"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/json"
    body = bad.json()
    assert (body["code"], body["request_id"]) == ("VALIDATION_FAILED", "rid-bad-note")
    assert body["fields"] == [
        {"pointer": "/body/tags", "reason": "'work' is not of type 'array'"},
        {"pointer": "/body/title", "reason": "'' should be non-empty"},
    ]
    wrong_query = httpx.get(url, params={"page": "first"}, headers=ALICE)
    assert wrong_query.json()["fields"] == [{"pointer": "/query/page", "reason": "must be an integer"}]
    assert httpx.get(url, headers=ALICE).json()["total"] == 0  # the plugin never stored the bad note
    good = httpx.post(url, json={"title": "groceries", "tags": ["home"]}, headers=ALICE)
    assert good.status_code == 201 and good.json()["title"] == "groceries"
    assert "fields" not in httpx.get(f"{url}/missing", headers=ALICE).json()


def test_in_development_an_answer_that_breaks_its_schema_is_logged_and_served(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    def colour_required(schemas: dict[str, Any]) -> None:
        note = schemas["schemas/note.json"]
        note["required"] = [*note["required"], "colour"]

    plugins = folder(tmp_path)
    (plugins / "notes.wasm").write_bytes(with_schemas(colour_required))
    server = start_server(plugins, {**CONFIG, "server": {"validate_responses": True}})
    created = httpx.post(server.url + "/api/v1/notes", json={"title": "t"}, headers=ALICE)
    assert created.status_code == 201  # still served: the check only reports
    deadline = time.monotonic() + 10
    while "does not match its schema" not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    line = next(line for line in server.logs().splitlines() if "does not match its schema" in line)
    assert "POST /api/v1/notes -> 201" in line and "/body/colour is required" in line
    metrics = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {mint('ops', ['admin'])}"})
    assert 'arcana_response_mismatches_total{plugin="notes"} 1.0' in metrics.text


def test_a_hot_reload_with_changed_schemas_changes_what_is_refused(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    def tags_required(schemas: dict[str, Any]) -> None:
        schemas["schemas/note-input.json"]["required"] = ["title", "tags"]

    plugins = folder(tmp_path)
    url = start_server(plugins, CONFIG).url + "/api/v1/notes"
    assert httpx.post(url, json={"title": "no tags"}, headers=ALICE).status_code == 201
    part = plugins / ".notes.wasm.part"
    part.write_bytes(with_schemas(tags_required))
    os.replace(part, plugins / "notes.wasm")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = httpx.post(url, json={"title": "no tags"}, headers=ALICE)
        if r.status_code == 400:
            break
        time.sleep(0.05)
    assert r.status_code == 400, "the new schemas never took effect"
    assert r.json()["fields"] == [{"pointer": "/body/tags", "reason": "is required"}]
    assert httpx.post(url, json={"title": "tagged", "tags": ["a"]}, headers=ALICE).status_code == 201
