"""The audit trail over a real server: a login and a note created through notes both reach audit-log.

The path under test: the kernel emits ``auth.login``, notes emits
``note.created`` (``event_emit``); the event bus enqueues one delivery per
``[[subscribe]]`` handler; a worker of ``arcana serve`` (role ``all``) runs
audit-log's ``on_event``, which records the event; ``GET /api/v1/audit``
(admin only) serves the trail with filters.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ROOT
from e2e.server import ArcanaServer, admin_headers, mint
from fakes import wait_for

PASSWORD = "correct horse battery staple"


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name in ("notes", "audit-log"):
        shutil.copyfile(ROOT / "plugins" / name / f"{name}.wasm", folder / f"{name}.wasm")
    return folder


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_a_login_and_a_note_created_through_notes_both_appear_in_the_audit_trail(
    plugins: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    server = start_server(plugins)  # the default grants: notes [store, events], audit-log [store, events.kernel]
    url = server.url
    made = httpx.post(
        f"{url}/api/v1/admin/users",
        json={"email": "auditor@example.com", "password": PASSWORD, "roles": ["admin"]},
        headers=admin_headers(),
    )
    assert made.status_code == 201, made.text
    user_id = made.json()["id"]
    started = time.time()
    login = httpx.post(f"{url}/api/v1/auth/login", json={"email": "auditor@example.com", "password": PASSWORD})
    assert login.status_code == 200, login.text
    admin = bearer(login.json()["access_token"])
    note = httpx.post(f"{url}/api/v1/notes", json={"title": "audited"}, headers=admin)
    assert note.status_code == 201, note.text

    trail: dict[str, Any] = {}

    def both_recorded() -> bool:
        reply = httpx.get(f"{url}/api/v1/audit", params={"since": str(int(started) - 1)}, headers=admin)
        assert reply.status_code == 200, reply.text
        trail["items"] = reply.json()["items"]
        topics = {item["topic"] for item in trail["items"]}
        return {"auth.login", "note.created"} <= topics

    wait_for(both_recorded, 10.0, f"auth.login and note.created in the audit trail\n{server.logs()[-4000:]}")
    by_topic = {item["topic"]: item for item in trail["items"]}
    login_entry, note_entry = by_topic["auth.login"], by_topic["note.created"]
    assert login_entry["source"] == "kernel" and login_entry["payload"]["user_id"] == user_id
    assert note_entry["source"] == "notes" and note_entry["principal"] == user_id
    assert note_entry["payload"] == {"id": note.json()["id"], "owner": user_id, "title": "audited"}
    assert note_entry["time"] >= login_entry["time"] >= started - 1  # newest first
    assert trail["items"].index(note_entry) < trail["items"].index(login_entry)

    notes_only = httpx.get(f"{url}/api/v1/audit", params={"topic": "note.*"}, headers=admin).json()
    assert [item["topic"] for item in notes_only["items"]] == ["note.created"]
    mine = httpx.get(f"{url}/api/v1/audit", params={"principal": user_id, "topic": "note.created"}, headers=admin)
    assert mine.json()["total"] == 1


def test_the_audit_trail_is_for_admins_only(plugins: Path, start_server: Callable[..., ArcanaServer]) -> None:
    server = start_server(plugins)
    user = bearer(mint("someone", ["user"]))
    assert httpx.get(f"{server.url}/api/v1/audit", headers=user).status_code == 403
    assert httpx.get(f"{server.url}/api/v1/audit").status_code == 401
