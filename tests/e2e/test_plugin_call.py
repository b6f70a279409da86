"""`arcana plugin call` as an author runs it: the installed command, a real plugin, no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# The console script installed beside this interpreter, as an author runs it.
ARCANA = Path(sys.executable).parent / "arcana"


def _call(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(ARCANA)] if ARCANA.exists() else [sys.executable, "-m", "arcana.cli"]
    done = subprocess.run(
        [*command, "plugin", "call", *args], check=False, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    return done


def _body(stdout: str) -> object:
    return json.loads(stdout.split("\n\n", 1)[1])


def test_call_prints_status_headers_and_the_json_body_and_leaves_nothing_behind(tmp_path: Path) -> None:
    done = _call(str(ROOT / "plugins" / "hello" / "hello.wasm"), "GET /api/v1/hello/Ada", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 OK\n") and "\ncontent-type: application/json\n" in done.stdout
    assert _body(done.stdout) == {"message": "Hello, Ada!"}
    assert list(tmp_path.iterdir()) == []  # the database was a temporary one


def test_call_as_a_user_with_db_keeps_notes_between_calls(tmp_path: Path) -> None:
    notes, db = str(ROOT / "plugins" / "notes" / "notes.wasm"), str(tmp_path / "notes.db")
    as_u1 = ("--as", "u1", "--roles", "user", "--db", db)
    created = _call(notes, "POST /api/v1/notes", "--body", '{"title": "t"}', *as_u1)
    assert created.returncode == 0, created.stderr
    note = _body(created.stdout)
    assert isinstance(note, dict) and note["owner"] == "u1"
    listed = _call(notes, "GET /api/v1/notes", *as_u1)
    assert listed.returncode == 0 and [n["id"] for n in _body(listed.stdout)["items"]] == [note["id"]]  # type: ignore[index]
    anonymous = _call(notes, "GET /api/v1/notes", "--db", db)
    assert anonymous.returncode == 1 and anonymous.stdout.startswith("HTTP/1.1 401 Unauthorized\n")
    assert _body(anonymous.stdout)["code"] == "UNAUTHORIZED"  # type: ignore[index]


def test_a_trap_is_500_plugin_failed_and_a_bad_line_a_usage_error(fixture_wasm: dict[str, Path]) -> None:
    trapped = _call(str(fixture_wasm["trap"]), "GET /api/v1/test/trap")
    assert trapped.returncode == 1 and trapped.stdout.startswith("HTTP/1.1 500 Internal Server Error\n")
    assert _body(trapped.stdout)["code"] == "PLUGIN_FAILED"  # type: ignore[index]
    bad = _call(str(fixture_wasm["trap"]), "TRAP")
    assert bad.returncode == 2 and bad.stderr.startswith("arcana: not a request line") and bad.stdout == ""
