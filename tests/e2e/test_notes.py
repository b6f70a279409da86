"""The notes example over real HTTP, on SQLite and on PostgreSQL, across a server restart; per-user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from conftest import ROOT
from e2e.server import ArcanaServer, mint

ALICE = {"authorization": f"Bearer {mint('alice', ['user'], ttl=3600)}"}
BOB = {"authorization": f"Bearer {mint('bob', ['user'], ttl=3600)}"}
ADMIN = {"authorization": f"Bearer {mint('root', ['admin'], ttl=3600)}"}

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Serve notes (granted the store) on a fresh database: SQLite migrates itself, PostgreSQL by `arcana migrate`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/notes.db"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    config = {"database": {"url": url}, "grants": {"*": ["log"], "notes": ["store", "events"]}}
    if request.param == "postgresql":
        path = tmp_path / "migrate.yaml"
        path.write_text(yaml.safe_dump(config))
        done = subprocess.run(
            [sys.executable, "-m", "arcana.cli", "migrate", "--config", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "upgraded from None to revision" in done.stdout, done.stderr
    return config


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "notes" / "notes.wasm", folder / "notes.wasm")
    return folder


def create(url: str, title: str, tags: list[str]) -> dict[str, Any]:
    r = httpx.post(f"{url}/api/v1/notes", json={"title": title, "body": f"about {title}", "tags": tags}, headers=ALICE)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"/api/v1/notes/{r.json()['id']}"
    return r.json()  # type: ignore[no-any-return]


def test_notes_crud_pagination_filter_sort_versions_across_a_restart(
    config: dict[str, Any], plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins, config)
    url = server.url
    notes = [create(url, f"note {i:02d}", ["even" if i % 2 == 0 else "odd", "all"]) for i in range(25)]
    first = notes[0]
    assert first["version"] == 1 and first["tags"] == ["even", "all"] and first["created_at"] == first["updated_at"]

    page = httpx.get(f"{url}/api/v1/notes", params={"size": 10, "page": 3}, headers=ALICE).json()
    assert (page["total"], page["page"], page["size"], len(page["items"])) == (25, 3, 10, 5)
    newest_first = [
        n["title"] for n in httpx.get(f"{url}/api/v1/notes", params={"size": 3}, headers=ALICE).json()["items"]
    ]
    assert newest_first == ["note 24", "note 23", "note 22"]
    odd = httpx.get(
        f"{url}/api/v1/notes", params={"tag": "odd", "sort": "title", "order": "asc", "size": 50}, headers=ALICE
    ).json()
    assert odd["total"] == 12 and [n["title"] for n in odd["items"]][:3] == ["note 01", "note 03", "note 05"]
    assert httpx.get(f"{url}/api/v1/notes", params={"tag": "none"}, headers=ALICE).json()["total"] == 0
    assert httpx.get(f"{url}/api/v1/notes", params={"sort": "body"}, headers=ALICE).status_code == 400
    assert httpx.get(f"{url}/api/v1/notes", params={"size": 1000}, headers=ALICE).status_code == 400

    note_url = f"{url}/api/v1/notes/{first['id']}"
    assert httpx.get(note_url, headers=ALICE).json() == first
    assert httpx.get(f"{url}/api/v1/notes/nope", headers=ALICE).status_code == 404
    assert httpx.get(f"{url}/api/v1/notes/..%2Fx", headers=ALICE).status_code == 404
    assert httpx.post(f"{url}/api/v1/notes", json={"body": "no title"}, headers=ALICE).status_code == 400

    updated = httpx.put(note_url, json={"title": "renamed", "tags": ["x"], "version": 1}, headers=ALICE)
    assert (
        updated.status_code == 200
        and updated.json()["version"] == 2
        and updated.json()["created_at"] == first["created_at"]
    )
    stale = httpx.put(note_url, json={"title": "lost update", "version": 1}, headers=ALICE)
    assert stale.status_code == 409 and stale.json()["code"] == "CONFLICT"
    assert httpx.put(note_url, json={"title": "no version"}, headers=ALICE).status_code == 400
    via_header = httpx.put(note_url, json={"title": "by if-match"}, headers={**ALICE, "if-match": '"2"'})
    assert via_header.status_code == 200 and via_header.json()["version"] == 3
    assert httpx.put(f"{url}/api/v1/notes/nope", json={"title": "t", "version": 1}, headers=ALICE).status_code == 404
    assert httpx.delete(f"{url}/api/v1/notes/{notes[1]['id']}", params={"version": 7}, headers=ALICE).status_code == 409
    gone = httpx.delete(f"{url}/api/v1/notes/{notes[1]['id']}", params={"version": 1}, headers=ALICE)
    assert gone.status_code == 204 and gone.content == b""
    assert httpx.delete(f"{url}/api/v1/notes/{notes[1]['id']}", headers=ALICE).status_code == 404

    assert server.stop() == 0  # a clean shutdown, then a new process on the same database
    restarted = start_server(plugins, config).url
    assert httpx.get(f"{restarted}/api/v1/notes/{first['id']}", headers=ALICE).json()["title"] == "by if-match"
    assert httpx.get(f"{restarted}/api/v1/notes", headers=ALICE).json()["total"] == 24
    assert httpx.get(f"{restarted}/api/v1/notes/{notes[1]['id']}", headers=ALICE).status_code == 404
    assert (
        httpx.put(
            f"{restarted}/api/v1/notes/{first['id']}", json={"title": "t", "version": 2}, headers=ALICE
        ).status_code
        == 409
    )


def test_each_user_sees_only_their_notes_and_admin_sees_all(
    config: dict[str, Any], plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    url = start_server(plugins, config).url
    mine = create(url, "alice's", ["a"])
    theirs = httpx.post(f"{url}/api/v1/notes", json={"title": "bob's"}, headers=BOB).json()
    assert mine["owner"] == "alice" and theirs["owner"] == "bob"
    assert [n["title"] for n in httpx.get(f"{url}/api/v1/notes", headers=BOB).json()["items"]] == ["bob's"]
    assert httpx.get(f"{url}/api/v1/notes", params={"tag": "a"}, headers=BOB).json()["total"] == 0
    note = f"{url}/api/v1/notes/{mine['id']}"
    assert httpx.get(note, headers=BOB).status_code == 404  # not 403: no hint that it exists
    assert httpx.put(note, json={"title": "hijack", "version": 1}, headers=BOB).status_code == 404
    assert httpx.delete(note, headers=BOB).status_code == 404
    assert httpx.get(f"{url}/api/v1/notes", headers=ADMIN).json()["total"] == 2
    edited = httpx.put(note, json={"title": "moderated", "version": 1}, headers=ADMIN).json()
    assert edited["owner"] == "alice" and edited["title"] == "moderated"
    forged = httpx.post(f"{url}/api/v1/notes", json={"title": "t", "owner": "bob"}, headers=ALICE).json()
    assert forged["owner"] == "alice"
    anonymous = httpx.get(f"{url}/api/v1/notes")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "UNAUTHORIZED"
