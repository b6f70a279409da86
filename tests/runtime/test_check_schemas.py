"""`arcana plugin check` on real modules with schemas: it prints each route's contract, and refuses a bad
schema, a missing file or an unknown protobuf message, naming the manifest field and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arcana.check import check_plugin
from arcana.config import load_config

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def copy(folder: Path, name: str, manifest_edit: tuple[str, str] | None = None) -> Path:
    """plugins/<name>'s module in ``folder``; with ``manifest_edit`` (old, new) a sidecar manifest so edited."""
    if manifest_edit is not None:
        text = (PLUGINS / name / "plugin.toml").read_text()
        assert manifest_edit[0] in text
        (folder / f"{name}.toml").write_text(text.replace(*manifest_edit))
    return Path(shutil.copyfile(PLUGINS / name / f"{name}.wasm", folder / f"{name}.wasm"))


def check(path: Path) -> int:
    return check_plugin(path, load_config(None, environ={}), own_grants=True)


def test_check_prints_the_contract_of_each_route(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert check(copy(tmp_path, "notes")) == 0
    out = capsys.readouterr().out
    assert "schema: request schemas/note-input.json; responses 201 schemas/note.json" in out
    assert "schema: query version: integer; responses 204 (no body)" in out
    assert check(copy(tmp_path, "hello")) == 0
    assert "schema: path name: string; responses 200 greeter.v1.HelloReply" in capsys.readouterr().out


def test_a_schema_that_breaks_the_meta_schema_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wasm = copy(tmp_path, "notes")
    schemas = {
        p.relative_to(PLUGINS / "notes").as_posix(): json.loads(p.read_text())
        for p in (PLUGINS / "notes" / "schemas").glob("*.json")
    }
    schemas["schemas/note-input.json"]["properties"]["title"]["minLength"] = -1
    (tmp_path / "notes.schemas.json").write_text(json.dumps(schemas))
    assert check(wasm) == 1
    err = capsys.readouterr().err
    assert "route[1].request: schemas/note-input.json is not a valid JSON Schema at properties/title/minLength" in err


def test_a_schema_file_the_module_lacks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wasm = copy(tmp_path, "notes", ('201 = "schemas/note.json"', '201 = "schemas/created.json"'))
    assert check(wasm) == 1
    err = capsys.readouterr().err
    assert "route[1].responses.201: schema file schemas/created.json is not in the module" in err
    assert "fix: create schemas/created.json in the plugin folder and rebuild with `arcana plugin build`" in err


def test_an_unknown_protobuf_message_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wasm = copy(tmp_path, "hello", ('200 = "greeter.v1.HelloReply"', '200 = "greeter.v1.Goodbye"'))
    assert check(wasm) == 1
    err = capsys.readouterr().err
    assert "route[0].responses.200: message greeter.v1.Goodbye is not in the plugin's descriptors" in err
