"""The live OpenAPI document (arcana.openapi) and its routes, in process on the fake engine."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from arcana.edge.http_metrics import kernel_template
from arcana.edge.rest import create_kernel_app, create_rest_app
from arcana.errors import ErrorCode, ManifestInvalid
from arcana.kernel import Kernel
from arcana.kernel_protos import kernel_descriptors
from arcana.manifest import parse_manifest
from arcana.openapi import KERNEL_GRPC, LiveDocument, build_document
from arcana.openapi_kernel import KERNEL_OPERATIONS
from fakes import FakePlugin, Kernels, greeter_descriptors, manifest_toml, reply, route, write_plugin

# Kernel routes the document leaves out on purpose: Prometheus text for a scraper, and the docs themselves.
NOT_DOCUMENTED = {"/metrics", "/openapi.json", "/docs", "/docs/assets/{name}", "/static/{filename}"}
NOTES_ROUTES = [
    route("GET", "/api/v1/notes", "list_notes"),
    route("POST", "/api/v1/notes", "create_note", roles=["user", "editor"]),
    route("GET", "/api/v1/notes/{id}", "get_note", public=True),
    route("PUT", "/api/v1/notes/{id}", "put_note", abi="raw", content_type="text/plain", rate_limit="10/minute"),
]


def load(kernel: Kernel) -> Kernel:
    asyncio.run(kernel.load_all())
    return kernel


def serve_notes(kernels: Kernels, version: str = "1.0.0", extra: list[dict[str, Any]] | None = None) -> None:
    handlers = {r["handler"]: reply({"body": {}}) for r in [*NOTES_ROUTES, *(extra or [])]}
    kernels.engine.define("notes", FakePlugin({**handlers, "say": reply({})}))
    grpc = [{"method": "fake.v1.Greeter/Say", "handler": "say", "roles": ["user"]}]
    path = write_plugin(
        kernels.plugins, manifest_toml("notes", version, routes=[*NOTES_ROUTES, *(extra or [])], grpc=grpc)
    )
    path.with_suffix(".pb").write_bytes(greeter_descriptors())


@pytest.fixture
def document(kernels: Kernels) -> dict[str, Any]:
    serve_notes(kernels)
    return build_document(load(kernels()).registry.snapshot)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }


def test_every_plugin_route_is_an_operation_with_its_path_parameters(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths["/api/v1/notes"]) == {"get", "post"}
    assert set(paths["/api/v1/notes/{id}"]) == {"get", "put"}
    get_note = paths["/api/v1/notes/{id}"]["get"]
    assert get_note["tags"] == ["notes"]
    assert [(p["name"], p["in"], p["required"]) for p in get_note["parameters"]] == [("id", "path", True)]
    assert paths["/api/v1/notes"]["get"]["parameters"] == []


def test_protected_routes_inherit_the_bearer_requirement_and_name_their_roles(document: dict[str, Any]) -> None:
    assert document["security"] == [{"bearerAuth": []}]
    create = document["paths"]["/api/v1/notes"]["post"]
    listing = document["paths"]["/api/v1/notes"]["get"]
    assert "security" not in create and "security" not in listing
    assert "Requires one of the roles: `user`, `editor`." in create["description"]
    assert "Requires a signed-in user" in listing["description"]
    assert {"401", "403"} <= set(create["responses"]) and {"401", "403"} <= set(listing["responses"])


def test_a_public_route_is_marked_with_an_empty_security_list(document: dict[str, Any]) -> None:
    get_note = document["paths"]["/api/v1/notes/{id}"]["get"]
    assert get_note["security"] == []
    assert "Public" in get_note["description"]
    assert not {"401", "403"} & set(get_note["responses"])


def test_every_operation_answers_the_error_model(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]["code"]["enum"]) == {c.value for c in ErrorCode}
    responses = document["components"]["responses"]
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert "500" in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = answer["$ref"].rsplit("/", 1)[1]
                    assert responses[ref]["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"
                    }
    put = document["paths"]["/api/v1/notes/{id}"]["put"]
    assert {"400", "413", "429", "500", "503", "504", "default"} <= set(put["responses"])
    assert responses["Unauthorized"]["headers"]["www-authenticate"]["schema"] == {"type": "string"}
    assert "retry-after" in responses["RateLimited"]["headers"]


def test_a_raw_route_documents_its_content_type_and_rate_limit(document: dict[str, Any]) -> None:
    put = document["paths"]["/api/v1/notes/{id}"]["put"]
    assert list(put["responses"]["2XX"]["content"]) == ["text/plain"]
    assert list(put["requestBody"]["content"]) == ["application/octet-stream"]
    assert "10/minute" in put["description"]


def test_kernel_routes_match_the_kernel_apps_url_map(kernels: Kernels, document: dict[str, Any]) -> None:
    app = create_kernel_app(kernels())
    served = {
        (method, kernel_template(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    served = {(m, p) for m, p in served if p not in NOT_DOCUMENTED}
    documented = {(op.method, op.path) for op in KERNEL_OPERATIONS}
    assert served == documented
    for method, path in documented:
        assert document["paths"][path][method.lower()]["tags"][0].startswith("arcana.")
    assert document["paths"]["/api/v1/auth/login"]["post"]["security"] == []
    assert "`admin`" in document["paths"]["/api/v1/admin/users"]["get"]["description"]


def test_grpc_methods_are_listed_beside_the_routes(document: dict[str, Any]) -> None:
    assert [s for s in document["x-arcana-grpc"] if s["plugin"] == "notes"] == [
        {
            "service": "fake.v1.Greeter",
            "plugin": "notes",
            "methods": [
                {
                    "method": "Say",
                    "path": "/fake.v1.Greeter/Say",
                    "request": "fake.v1.Named",
                    "response": "fake.v1.Counted",
                    "request_schema": "#/components/schemas/notes.fake.v1.Named",
                    "response_schema": "#/components/schemas/notes.fake.v1.Counted",
                    "access": "Requires one of the roles: `user`.",
                    "public": False,
                    "roles": ["user"],
                }
            ],
        }
    ]
    named = document["components"]["schemas"]["notes.fake.v1.Named"]
    assert named["properties"]["name"] == {"type": "string"} and "$schema" not in named
    tag = next(t for t in document["tags"] if t["name"] == "notes")
    assert "| `/fake.v1.Greeter/Say` | `fake.v1.Named` | `fake.v1.Counted` |" in tag["description"]


ITEMS_MANIFEST = """
[plugin]
name = "items"
version = "1.0.0"

[[route]]
method = "PUT"
path = "/api/v1/items/{id}"
handler = "put"
request = "schemas/item.json"
params = { id = "integer" }
query = { dry = "boolean", tag = "string" }
required_query = ["tag"]
responses = { 200 = "schemas/item.json", 404 = "" }
"""
ITEM_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "parts": {"type": "array", "items": {"$ref": "#/$defs/part"}}},
    "$defs": {"part": {"type": "string", "minLength": 1}},
}


def test_a_routes_contract_gives_its_parameters_body_and_answers(kernels: Kernels) -> None:
    kernels.engine.define("items", FakePlugin({"put": reply({})}))
    path = write_plugin(kernels.plugins, ITEMS_MANIFEST)
    path.with_suffix(".schemas.json").write_text(json.dumps({"schemas/item.json": ITEM_SCHEMA}))
    document = build_document(load(kernels()).registry.snapshot)
    validate(document)
    put = document["paths"]["/api/v1/items/{id}"]["put"]
    assert [(p["name"], p["in"], p["required"], p["schema"]) for p in put["parameters"]] == [
        ("id", "path", True, {"type": "integer"}),
        ("dry", "query", False, {"type": "boolean"}),
        ("tag", "query", True, {"type": "string"}),
    ]
    item = {"$ref": "#/components/schemas/items.schemas.item"}
    assert put["requestBody"] == {"required": True, "content": {"application/json": {"schema": item}}}
    assert put["responses"]["200"]["content"] == {"application/json": {"schema": item}}
    assert put["responses"]["404"] == {"$ref": "#/components/responses/NotFound"}
    assert "2XX" not in put["responses"] and "VALIDATION_FAILED" in put["description"]
    component = document["components"]["schemas"]["items.schemas.item"]
    assert component["properties"]["parts"]["items"] == {"$ref": "#/components/schemas/items.schemas.item/$defs/part"}
    assert component["$defs"] == ITEM_SCHEMA["$defs"] and "$schema" not in component


def test_the_kernels_own_grpc_services_are_listed_under_their_rest_twins(document: dict[str, Any]) -> None:
    kernel = {s["service"]: s for s in document["x-arcana-grpc"] if s["plugin"] == ""}
    assert set(kernel) == set(KERNEL_GRPC) == set(kernel_descriptors().services())
    login = next(m for m in kernel["arcana.auth.v1.AuthService"]["methods"] if m["method"] == "Login")
    assert (login["path"], login["public"]) == ("/arcana.auth.v1.AuthService/Login", True)
    assert all(m["roles"] == ["admin"] for m in kernel["arcana.admin.v1.AdminService"]["methods"])
    admin_tag = next(t for t in document["tags"] if t["name"] == "arcana.admin")
    assert (
        "| `/arcana.admin.v1.AdminService/ListPlugins` | `arcana.admin.v1.ListPluginsRequest` |"
        in (admin_tag["description"])
    )


def test_info_version_is_stable_for_one_table_and_moves_with_a_new_route(kernels: Kernels) -> None:
    serve_notes(kernels)
    kernel = load(kernels())
    first = build_document(kernel.registry.snapshot)["info"]["version"]
    again = build_document(load(kernels()).registry.snapshot)["info"]["version"]  # another kernel, same folder
    assert first == again and len(first) == 16
    serve_notes(kernels, "1.1.0", extra=[route("DELETE", "/api/v1/notes/{id}", "delete_note")])
    asyncio.run(kernel.rescan())
    changed = build_document(kernel.registry.snapshot)
    assert changed["info"]["version"] != first
    assert "delete" in changed["paths"]["/api/v1/notes/{id}"]


def test_routes_of_one_shape_share_one_path_item(kernels: Kernels) -> None:
    kernels.engine.define("a", FakePlugin({"h": reply({})}))
    kernels.engine.define("b", FakePlugin({"h": reply({})}))
    write_plugin(kernels.plugins, manifest_toml("a", routes=[route("GET", "/x/{id}", "h")]))
    write_plugin(kernels.plugins, manifest_toml("b", routes=[route("POST", "/x/{key}", "h")]))
    document = build_document(load(kernels()).registry.snapshot)
    validate(document)
    assert set(document["paths"]["/x/{id}"]) == {"get", "post"} and "/x/{key}" not in document["paths"]
    assert "the plugin's `key`" in document["paths"]["/x/{id}"]["post"]["parameters"][0]["description"]


def test_the_live_document_is_built_once_per_snapshot_and_again_after_a_reload(kernels: Kernels) -> None:
    serve_notes(kernels)
    kernel = load(kernels())
    live = LiveDocument(lambda: kernel.registry.snapshot)
    first = live.current()
    assert live.current() is first
    serve_notes(kernels, "1.1.0", extra=[route("DELETE", "/api/v1/notes/{id}", "delete_note")])
    asyncio.run(kernel.rescan())
    second = live.current()
    assert second is not first and second.version != first.version and b'"delete"' in second.body


@pytest.mark.parametrize("path", ["/docs", "/docs/assets/x", "/openapi.json"])
def test_a_plugin_cannot_take_the_docs_paths(path: str) -> None:
    with pytest.raises(ManifestInvalid, match="reserved prefix"):
        parse_manifest(manifest_toml("p", routes=[route("GET", path, "h")]))


def rest(kernel: Kernel, *requests: tuple[str, dict[str, str]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            return [await client.get(url, headers=headers) for url, headers in requests]

    return asyncio.run(main())


def test_openapi_json_is_served_with_its_version_as_etag(kernels: Kernels) -> None:
    serve_notes(kernels)
    kernel = load(kernels())
    (served,) = rest(kernel, ("/openapi.json", {}))
    assert served.status_code == 200 and served.headers["content-type"] == "application/json"
    assert served.json() == build_document(kernel.registry.snapshot)
    etag = served.headers["etag"]
    assert etag == f'"{served.json()["info"]["version"]}"'
    (again,) = rest(kernel, ("/openapi.json", {"if-none-match": etag}))
    assert (again.status_code, again.content) == (304, b"")


def test_the_docs_page_loads_only_packaged_assets_under_a_strict_policy(kernels: Kernels) -> None:
    page, bundle, css, init, missing = rest(
        kernels(),
        ("/docs", {}),
        ("/docs/assets/swagger-ui-bundle.js", {}),
        ("/docs/assets/swagger-ui.css", {}),
        ("/docs/assets/init.js", {}),
        ("/docs/assets/..%2Fdocs%2Findex.html", {}),
    )
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "http" not in policy
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.content
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert b"persistAuthorization: true" in init.content
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_an_integer_parameter_past_pythons_digit_limit_is_refused_not_a_500(kernels: Kernels) -> None:
    """The document types `id` and `n` as integers; a client may send 5,000 digits (the URL holds 8 KB)."""
    kernels.engine.define("big", FakePlugin({"get": reply({})}))
    manifest = manifest_toml("big", routes=[route("GET", "/big/{id}", "get", public=True)])
    write_plugin(kernels.plugins, manifest + 'params = { id = "integer" }\nquery = { n = "integer" }\n')
    kernel = load(kernels())
    digits = "9" * 5000
    by_path, by_query, fine = rest(kernel, (f"/big/{digits}", {}), (f"/big/1?n={digits}", {}), ("/big/12?n=3", {}))
    assert (by_path.status_code, by_path.json()["fields"]) == (
        400,
        [{"pointer": "/path/id", "reason": "must be an integer"}],
    )
    assert (by_query.status_code, by_query.json()["fields"][0]["pointer"]) == (400, "/query/n")
    assert fine.status_code == 200
