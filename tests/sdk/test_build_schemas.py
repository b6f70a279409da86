"""`arcana plugin build` embeds the JSON Schema files a manifest's routes name in the section arcana.schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arcana_sdk.build import BuildError, embed_schemas, schema_files
from arcana_sdk.wasm_sections import SCHEMAS_SECTION, read_custom_section

WASM_HEADER = b"\x00asm\x01\x00\x00\x00"
NOTES = Path(__file__).resolve().parents[2] / "plugins" / "notes"
MANIFEST = b"""
[plugin]
name = "a"
version = "1.0.0"

[[route]]
method = "POST"
path = "/x"
handler = "x"
request = "schemas/in.json"

[route.responses]
200 = "schemas/out.json"
201 = "pkg.v1.Reply"
204 = ""

[[route]]
method = "PUT"
path = "/y"
handler = "y"
request = "schemas/in.json"
"""


def folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_files_the_routes_name_are_found_once_each_and_messages_are_left_to_the_kernel() -> None:
    assert schema_files(MANIFEST) == {
        "schemas/in.json": "route[0].request",
        "schemas/out.json": "route[0].responses.200",
    }


def test_the_section_holds_every_named_file_parsed_canonically(tmp_path: Path) -> None:
    src = folder(tmp_path, {"schemas/in.json": '{"type": "object",\n "required": ["a"]}', "schemas/out.json": "{}"})
    module = embed_schemas(src, MANIFEST, WASM_HEADER)
    payload = read_custom_section(module, SCHEMAS_SECTION)
    assert payload == b'{"schemas/in.json":{"required":["a"],"type":"object"},"schemas/out.json":{}}'
    # Building again replaces the section rather than adding a second one.
    again = embed_schemas(src, MANIFEST, module)
    assert again == module


def test_a_manifest_without_schema_files_gets_no_section(tmp_path: Path) -> None:
    module = embed_schemas(tmp_path, b'[plugin]\nname = "a"\nversion = "1.0.0"\n', WASM_HEADER)
    assert module == WASM_HEADER and read_custom_section(module, SCHEMAS_SECTION) is None


@pytest.mark.parametrize(
    ("files", "manifest", "message"),
    [
        ({"schemas/out.json": "{}"}, MANIFEST, "route[0].request names schemas/in.json, which does not exist"),
        (
            {"schemas/in.json": "{oops", "schemas/out.json": "{}"},
            MANIFEST,
            "schemas/in.json (named by route[0].request) is not valid JSON",
        ),
        ({}, MANIFEST.replace(b"schemas/in.json", b"../in.json"), "route[0].request names ../in.json, outside"),
    ],
)
def test_a_missing_bad_or_outside_file_fails_the_build_naming_it(
    tmp_path: Path, files: dict[str, str], manifest: bytes, message: str
) -> None:
    src = folder(tmp_path / "plugin", files) if files else (tmp_path / "plugin")
    src.mkdir(exist_ok=True)
    (tmp_path / "in.json").write_text("{}")
    with pytest.raises(BuildError, match="cannot build plugin") as failed:
        embed_schemas(src, manifest, WASM_HEADER)
    assert message in str(failed.value)


def test_the_committed_notes_module_carries_its_schema_files() -> None:
    payload = read_custom_section((NOTES / "notes.wasm").read_bytes(), SCHEMAS_SECTION)
    assert payload is not None
    embedded = json.loads(payload)
    on_disk = {f"schemas/{p.name}": json.loads(p.read_text()) for p in (NOTES / "schemas").glob("*.json")}
    assert embedded == on_disk
