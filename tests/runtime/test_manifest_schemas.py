"""A route's contract in the manifest: schema references, parameter types, query, responses."""

from __future__ import annotations

import pytest

from arcana.manifest import ManifestInvalid, QueryParam, SchemaRef, parse_manifest

HEAD = '[plugin]\nname = "notes"\nversion = "1.0.0"\n'


def route(body: str) -> str:
    return HEAD + '[[route]]\nmethod = "PUT"\npath = "/api/v1/notes/{id}"\nhandler = "update"\n' + body


def problems(text: str) -> list[str]:
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(text)
    return [f"{p.field}: {p.message}" for p in refused.value.problems]


def test_a_full_contract_parses_into_typed_fields() -> None:
    parsed = parse_manifest(
        route(
            'request = "schemas/note-input.json"\nrequired_query = ["q"]\n'
            '[route.params]\nid = "uuid"\n[route.query]\npage = "integer"\nq = "string"\n'
            '[route.responses]\n200 = "notes.v1.Note"\n404 = ""\n'
        )
    )
    r = parsed.routes[0]
    assert r.request == SchemaRef("file", "schemas/note-input.json")
    assert r.params == {"id": "uuid"}
    assert r.query == {"page": QueryParam("integer", False), "q": QueryParam("string", True)}
    assert r.responses == {200: SchemaRef("proto", "notes.v1.Note"), 404: None}
    assert r.has_contract
    assert r.schema_refs() == [SchemaRef("file", "schemas/note-input.json"), SchemaRef("proto", "notes.v1.Note")]


def test_a_route_without_a_contract_has_none() -> None:
    r = parse_manifest(route("")).routes[0]
    assert (r.request, r.params, r.query, r.responses) == (None, {}, {}, {})
    assert not r.has_contract


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ('"/etc/schema.json"', "is outside the plugin folder"),
        ('"schemas/../../x.json"', "is outside the plugin folder"),
        ('"schemas/x.yaml"', "is not a .json file"),
        ('"Note"', "is not a .json file"),
        ('"notes.v1.9Note"', "is not a protobuf message name"),
        ("3", "must be a schema reference"),
        ('""', "must be a schema reference"),
    ],
)
def test_a_bad_schema_reference_is_refused_with_the_reason(ref: str, message: str) -> None:
    [found] = problems(route(f"request = {ref}\n"))
    assert found.startswith("route[0].request: ") and message in found


def test_the_tables_must_be_tables() -> None:
    found = problems(route('params = "id"\nquery = 1\nresponses = []\nrequired_query = "q"\n'))
    assert found == [
        "route[0].params: must be a table",
        "route[0].query: must be a table",
        "route[0].required_query: must be a list of query parameter names, got 'q'",
        "route[0].responses: must be a table",
    ]
