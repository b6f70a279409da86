"""Validation at the edge, in process: a request that breaks its route's schema never reaches the plugin.

The real kernel, loader and core over the fake engine (tests/fakes.py): the plugin's call log shows
whether it ran; the module carries its schemas in the ``arcana.schemas`` section, as a build writes it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest

from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from arcana.types import CallContext
from arcana_sdk.wasm_sections import SCHEMAS_SECTION, append_custom_section
from fakes import FakePlugin, Kernels, mint, reply, wasm_bytes

NOTE_INPUT = {
    "type": "object",
    "required": ["title"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
NOTE = {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
MANIFEST = """
[plugin]
name = "app"
version = "1.0.0"

[[route]]
method = "POST"
path = "/api/notes/{id}"
handler = "save"
public = true
request = "schemas/note-input.json"

[route.params]
id = "integer"

[route.query]
dry = "boolean"

[route.responses]
201 = "schemas/note.json"

[[route]]
method = "POST"
path = "/api/free"
handler = "save"
public = true
"""


def module(schemas: dict[str, Any] | None, manifest: str = MANIFEST, build: str = "") -> bytes:
    wasm = wasm_bytes(manifest, build=build)
    if schemas is not None:
        wasm = append_custom_section(wasm, SCHEMAS_SECTION, json.dumps(schemas).encode())
    return wasm


def install(kernels: Kernels, wasm: bytes, handler: Any = None) -> FakePlugin:
    plugin = kernels.engine.define("app", FakePlugin({"save": handler or reply({"status": 201, "body": {"id": 1}})}))
    (kernels.plugins / "app.wasm").write_bytes(wasm)
    return plugin


def started(kernels: Kernels, **settings: str) -> Kernel:
    kernel = kernels(**settings)
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == (), kernel.plugins_view().failures
    return kernel


def rest(kernel: Kernel, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(main())


SCHEMAS = {"schemas/note-input.json": NOTE_INPUT, "schemas/note.json": NOTE}


def test_a_bad_body_gets_400_with_its_fields_and_the_plugin_is_never_called(kernels: Kernels) -> None:
    plugin = install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    instances = plugin.instances
    r = rest(kernel, "POST", "/api/notes/7", json={"title": "", "tags": ["a", 2]}, headers={"x-request-id": "rid-v"})
    assert r.status_code == 400
    body = r.json()
    assert (body["code"], body["request_id"]) == ("VALIDATION_FAILED", "rid-v")
    assert {f["pointer"] for f in body["fields"]} == {"/body/title", "/body/tags/1"}
    assert all(f["reason"] for f in body["fields"])
    # Not called, and no instance borrowed or made for it.
    assert plugin.calls == [] and plugin.instances == instances


@pytest.mark.parametrize(
    ("url", "body", "pointers"),
    [
        ("/api/notes/x", b'{"title": "t"}', ["/path/id"]),
        ("/api/notes/1?dry=yes", b'{"title": "t"}', ["/query/dry"]),
        ("/api/notes/1", b"", ["/body"]),
        ("/api/notes/1", b"{not json", ["/body"]),
        ("/api/notes/1", b"[]", ["/body"]),
        ("/api/notes/x?dry=1", b"{}", ["/path/id", "/query/dry", "/body/title"]),
    ],
)
def test_each_part_of_the_request_is_checked_and_named(
    kernels: Kernels, url: str, body: bytes, pointers: list[str]
) -> None:
    plugin = install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    r = rest(kernel, "POST", url, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert [f["pointer"] for f in r.json()["fields"]] == pointers
    assert plugin.calls == []


def test_a_body_schema_wants_a_json_content_type_as_the_envelope_does(kernels: Kernels) -> None:
    plugin = install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    r = rest(kernel, "POST", "/api/notes/1", content=b'{"title": "t"}', headers={"content-type": "text/plain"})
    assert r.json()["fields"] == [
        {"pointer": "/body", "reason": "must be JSON: send it with content-type: application/json"}
    ]
    gz = rest(kernel, "POST", "/api/notes/1", json={"title": "t"}, headers={"content-encoding": "gzip"})
    assert "content-encoding 'gzip' is not supported" in gz.json()["fields"][0]["reason"]
    assert plugin.calls == []


def test_a_good_request_reaches_the_plugin_with_its_values_still_strings(kernels: Kernels) -> None:
    plugin = install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    r = rest(kernel, "POST", "/api/notes/7?dry=true", json={"title": "t"})
    assert (r.status_code, r.json()) == (201, {"id": 1})
    [call] = plugin.calls
    assert (call.input["params"], call.input["query"], call.input["body"]) == (
        {"id": "7"},
        {"dry": ["true"]},
        {"title": "t"},
    )


def test_the_checked_body_reaches_the_plugin_as_sent_without_the_schemas_defaults(kernels: Kernels) -> None:
    # The envelope reuses the body the check parsed: the check must not have written into it.
    with_default = {
        **NOTE_INPUT,
        "properties": {**NOTE_INPUT["properties"], "tags": {"type": "array", "default": ["x"]}},
    }
    plugin = install(kernels, module({**SCHEMAS, "schemas/note-input.json": with_default}))
    kernel = started(kernels)
    r = rest(kernel, "POST", "/api/notes/7", json={"title": "t", "n": 1.5, "deep": {"a": [None, True]}})
    assert r.status_code == 201
    [call] = plugin.calls
    assert call.input["body"] == {"title": "t", "n": 1.5, "deep": {"a": [None, True]}}


def test_a_route_without_a_schema_is_not_checked(kernels: Kernels) -> None:
    plugin = install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    assert rest(kernel, "POST", "/api/free", content=b"{anything").status_code == 201
    assert len(plugin.calls) == 1


def test_other_answers_carry_no_fields(kernels: Kernels) -> None:
    install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    r = rest(kernel, "GET", "/api/notes/1")
    assert r.status_code == 405 and "fields" not in r.json()


def test_the_sidecar_schemas_win_over_the_embedded_ones(kernels: Kernels) -> None:
    plugin = install(kernels, module(SCHEMAS))
    loose = {"schemas/note-input.json": {"type": "object"}, "schemas/note.json": NOTE}
    (kernels.plugins / "app.schemas.json").write_text(json.dumps(loose))
    kernel = started(kernels)
    assert rest(kernel, "POST", "/api/notes/1", json={}).status_code == 201
    assert len(plugin.calls) == 1


def test_a_reload_with_a_changed_schema_changes_what_is_refused(kernels: Kernels) -> None:
    plugin = install(kernels, module(SCHEMAS))
    kernel = started(kernels)
    assert rest(kernel, "POST", "/api/notes/1", json={"title": "t", "tags": []}).status_code == 201
    stricter = {**NOTE_INPUT, "required": ["title", "tags"], "properties": {**NOTE_INPUT["properties"]}}
    stricter["properties"]["tags"] = {"type": "array", "minItems": 1, "items": {"type": "string"}}
    (kernels.plugins / "app.wasm").write_bytes(module({**SCHEMAS, "schemas/note-input.json": stricter}, build="2"))
    asyncio.run(kernel.load_all())
    assert kernel.plugins_view().failures == ()
    r = rest(kernel, "POST", "/api/notes/1", json={"title": "t", "tags": []})
    assert (r.status_code, [f["pointer"] for f in r.json()["fields"]]) == (400, ["/body/tags"])
    assert len(plugin.calls) == 1


def test_a_plugin_whose_schema_file_is_missing_is_refused_naming_it(kernels: Kernels) -> None:
    install(kernels, module({"schemas/note.json": NOTE}))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    [failure] = kernel.plugins_view().failures
    assert any("schemas/note-input.json is not in the module" in e for e in failure.errors)


def answer(body: Any) -> Any:
    def handler(_input: Any, _context: CallContext) -> Any:
        return {"status": 201, "body": body}

    return handler


def test_in_development_an_answer_that_breaks_its_schema_is_logged_and_still_sent(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    install(kernels, module(SCHEMAS), answer({"id": "not-a-number"}))
    kernel = started(kernels, SERVER__VALIDATE_RESPONSES="true")
    with caplog.at_level(logging.WARNING, logger="arcana.core"):
        r = rest(kernel, "POST", "/api/notes/1", json={"title": "t"})
    assert (r.status_code, r.json()) == (201, {"id": "not-a-number"})
    [record] = [rec for rec in caplog.records if "does not match its schema" in rec.getMessage()]
    assert "/body/id" in record.getMessage() and "POST /api/notes/{id} -> 201" in record.getMessage()


def test_answers_are_not_checked_unless_configured(kernels: Kernels, caplog: pytest.LogCaptureFixture) -> None:
    install(kernels, module(SCHEMAS), answer({"id": "not-a-number"}))
    kernel = started(kernels)
    with caplog.at_level(logging.WARNING, logger="arcana.core"):
        assert rest(kernel, "POST", "/api/notes/1", json={"title": "t"}).status_code == 201
    assert not [rec for rec in caplog.records if "does not match its schema" in rec.getMessage()]


def test_a_conforming_answer_logs_nothing(kernels: Kernels, caplog: pytest.LogCaptureFixture) -> None:
    install(kernels, module(SCHEMAS))
    kernel = started(kernels, SERVER__VALIDATE_RESPONSES="true")
    with caplog.at_level(logging.WARNING, logger="arcana.core"):
        assert rest(kernel, "POST", "/api/notes/1", json={"title": "t"}).status_code == 201
    assert not [rec for rec in caplog.records if "does not match its schema" in rec.getMessage()]


def test_an_unauthenticated_caller_gets_401_before_the_schema_is_looked_at(kernels: Kernels) -> None:
    install(kernels, module(SCHEMAS, MANIFEST.replace("public = true\nrequest", "request", 1)))
    kernel = started(kernels)
    assert rest(kernel, "POST", "/api/notes/x", content=b"").status_code == 401
    token = f"Bearer {mint('u-1', ('user',))}"
    assert rest(kernel, "POST", "/api/notes/x", content=b"", headers={"authorization": token}).status_code == 400


def test_a_changed_schemas_sidecar_reloads_the_module_beside_it(kernels: Kernels) -> None:
    from watchfiles import Change

    from arcana.watcher import relevant_in

    plugin = install(kernels, module(SCHEMAS))
    sidecar = kernels.plugins / "app.schemas.json"
    sidecar.write_text(json.dumps(SCHEMAS))
    kernel = started(kernels)
    assert rest(kernel, "POST", "/api/notes/1", json={}).status_code == 400
    sidecar.write_text(json.dumps({**SCHEMAS, "schemas/note-input.json": {"type": "object"}}))
    # The watcher hears it, and the kernel maps it to its module, as it does NAME.toml and NAME.pb.
    assert relevant_in(kernels.plugins)(Change.modified, str(sidecar))
    assert kernel.sidecar_owner(sidecar) == kernels.plugins / "app.wasm"
    asyncio.run(kernel.sync([kernels.plugins / "app.wasm"]))
    assert rest(kernel, "POST", "/api/notes/1", json={}).status_code == 201
    assert len(plugin.calls) == 1


RAW_MANIFEST = """
[plugin]
name = "app"
version = "1.0.0"

[[route]]
method = "POST"
path = "/api/raw"
handler = "save"
public = true
abi = "raw"
request = "schemas/note-input.json"
"""


def test_a_raw_route_checks_its_body_only_when_it_declares_a_schema_whatever_its_content_type(
    kernels: Kernels,
) -> None:
    plugin = install(kernels, module(SCHEMAS, RAW_MANIFEST), reply(b"stored"))
    kernel = started(kernels)
    bad = rest(kernel, "POST", "/api/raw", content=b'{"tags": "x"}', headers={"content-type": "text/plain"})
    assert [f["pointer"] for f in bad.json()["fields"]] == ["/body/tags", "/body/title"]
    assert plugin.calls == []
    good = rest(kernel, "POST", "/api/raw", content=b'{"title": "t"}', headers={"content-type": "text/plain"})
    assert (good.status_code, good.content) == (200, b"stored")
    assert [call.data for call in plugin.calls] == [b'{"title": "t"}']
