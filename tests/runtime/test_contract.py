"""The Contract: schema references resolved and compiled, protobuf messages as proto3 JSON Schemas, field errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastjsonschema
import jsonschema
import pytest

from arcana.contract import ContractInvalid, build_contract, parse_schemas_section
from arcana.descriptors import DescriptorSet
from arcana.errors import FieldProblem
from arcana.manifest import parse_manifest
from arcana.proto_schema import message_schema
from arcana_sdk.protoc import compile_proto_dir

PROTO = """
syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";

message Order {
  enum State { STATE_UNSPECIFIED = 0; OPEN = 1; SHIPPED = 2; }
  int64 order_id = 1;
  State state = 2;
  repeated Line lines = 3;
  map<string, int32> counts = 4;
  google.protobuf.Timestamp placed_at = 5;
  Order parent = 6;
  bytes blob = 7;
  uint32 quantity = 8;
}

message Line {
  string sku = 1;
  double price = 2;
}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> DescriptorSet:
    folder = tmp_path_factory.mktemp("proto") / "shop" / "v1"
    folder.mkdir(parents=True)
    (folder / "shop.proto").write_text(PROTO)
    return DescriptorSet.parse(compile_proto_dir(folder.parent.parent))


def test_a_message_becomes_the_json_schema_of_its_proto3_json(shop: DescriptorSet) -> None:
    schema = message_schema(shop, "shop.v1.Order")
    jsonschema.Draft202012Validator.check_schema(schema)
    props = schema["properties"]
    # lowerCamelCase names, and the .proto names that parsers accept too
    assert props["orderId"] == props["order_id"]
    assert props["orderId"]["type"] == ["string", "integer"] and props["orderId"]["pattern"] == "^-?[0-9]+$"
    assert props["state"] == {"type": "string", "enum": ["STATE_UNSPECIFIED", "OPEN", "SHIPPED"]}
    assert props["lines"] == {"type": "array", "items": {"$ref": "#/$defs/shop.v1.Line"}}
    assert props["counts"]["additionalProperties"]["type"] == "integer"
    assert props["placedAt"] == {"type": "string", "format": "date-time"}
    assert props["parent"] == {"$ref": "#/$defs/shop.v1.Order"}  # recursion ends in $defs
    assert props["blob"]["contentEncoding"] == "base64"
    assert props["quantity"]["minimum"] == 0
    assert schema["$defs"]["shop.v1.Line"]["properties"]["price"] == {"type": "number"}


def test_what_protobuf_writes_the_schema_accepts_and_what_it_refuses_it_refuses(shop: DescriptorSet) -> None:
    validate = fastjsonschema.compile(message_schema(shop, "shop.v1.Order"))
    written = {
        "orderId": "9007199254740993",
        "state": "OPEN",
        "lines": [{"sku": "a", "price": 1.5}],
        "counts": {"a": 2},
        "placedAt": "2026-12-03T09:00:00Z",
        "parent": {"orderId": 1, "lines": []},
    }
    validate(written)
    for bad in ({"orderId": "12x"}, {"state": "LOST"}, {"lines": [{"price": "free"}]}, {"parent": {"state": 3}}):
        with pytest.raises(fastjsonschema.JsonSchemaValueException):
            validate(bad)


def test_a_message_not_in_the_descriptors_is_a_descriptor_error(shop: DescriptorSet) -> None:
    with pytest.raises(Exception, match=r"shop\.v1\.Nope is not in the plugin's descriptors"):
        message_schema(shop, "shop.v1.Nope")


def manifest(request: str = "schemas/in.json", response: str = "shop.v1.Order") -> Any:
    return parse_manifest(
        f"""
[plugin]
name = "shop"
version = "1.0.0"

[[route]]
method = "POST"
path = "/orders/{{id}}"
handler = "order"
request = "{request}"

[route.params]
id = "uuid"

[route.query]
limit = "integer"

[route.responses]
200 = "{response}"
204 = ""
"""
    )


IN = {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}, "n": {"type": "integer"}}}


def problems_of(files: dict[str, Any], descriptors: DescriptorSet | None, **refs: str) -> list[str]:
    with pytest.raises(ContractInvalid) as refused:
        build_contract(manifest(**refs), files, descriptors)
    return [str(p) for p in refused.value.problems]


def test_a_contract_resolves_files_and_messages_per_route(shop: DescriptorSet) -> None:
    contract = build_contract(manifest(), {"schemas/in.json": IN}, shop)
    m = manifest()
    rc = contract.route(m.routes[0])
    assert rc is not None and rc.request_schema == IN and rc.checks_request
    assert rc.params == {"id": "uuid"} and rc.query["limit"].type == "integer"
    assert rc.response_schemas[204] is None and rc.response_schemas[200]["title"] == "shop.v1.Order"
    assert set(contract.schemas) == {"schemas/in.json", "shop.v1.Order"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "route[0].request: schema file schemas/in.json is not in the module"),
        ({"schemas/in.json": {"type": "objekt"}}, "schemas/in.json is not a valid JSON Schema at type"),
        ({"schemas/in.json": [1]}, "schemas/in.json is not a JSON Schema (an object)"),
        ({"schemas/in.json": {"$ref": "https://example.com/s.json"}}, "has a $ref to 'https://example.com/s.json'"),
        ({"schemas/in.json": {"prefixItems": [{}]}}, "uses prefixItems, which the edge validator does not support"),
    ],
)
def test_a_bad_schema_file_is_a_problem_naming_the_field(
    shop: DescriptorSet, files: dict[str, Any], expected: str
) -> None:
    found = problems_of(files, shop)
    assert len(found) == 1 and expected in found[0] and found[0].startswith("route[0].request: ")


def test_an_unknown_message_is_a_problem_naming_the_status(shop: DescriptorSet) -> None:
    found = problems_of({"schemas/in.json": IN}, shop, response="shop.v1.Missing")
    assert found == [
        "route[0].responses.200: message shop.v1.Missing is not in the plugin's descriptors "
        "(fix: name a message that the plugin's .proto files define (package.Name))"
    ]


def test_a_message_without_descriptors_is_a_problem() -> None:
    [found] = problems_of({"schemas/in.json": IN}, None)
    assert "names a protobuf message but the module has no descriptors" in found


def test_the_schemas_section_must_be_a_json_object() -> None:
    assert parse_schemas_section(None) == ({}, [])
    assert parse_schemas_section(b'{"a.json": {}}') == ({"a.json": {}}, [])
    assert "not valid JSON" in str(parse_schemas_section(b"{")[1][0])
    assert "not a JSON object" in str(parse_schemas_section(b"[]")[1][0])


@pytest.fixture
def order(shop: DescriptorSet) -> Any:
    m = manifest()
    return build_contract(m, {"schemas/in.json": IN}, shop).route(m.routes[0])


UUID = "123e4567-e89b-12d3-a456-426614174000"


def check(order: Any, params: dict[str, str], query: dict[str, list[str]], body: bytes) -> list[FieldProblem]:
    found: list[FieldProblem] = order.check_request(params, lambda name: query.get(name, []), body)
    return found


def test_a_good_request_has_no_field_errors(order: Any) -> None:
    assert check(order, {"id": UUID}, {"limit": ["10"]}, b'{"sku": "a", "n": 2}') == []


def test_field_errors_point_into_the_request(order: Any) -> None:
    found = check(order, {"id": "12"}, {"limit": ["ten"]}, b'{"n": "2", "x/y": 1}')
    assert [(f.pointer, f.reason) for f in found] == [
        ("/path/id", "must be a UUID, e.g. 123e4567-e89b-12d3-a456-426614174000"),
        ("/query/limit", "must be an integer"),
        ("/body/n", "'2' is not of type 'integer'"),
        ("/body/sku", "is required"),
    ]


def test_many_bad_items_give_at_most_twenty_field_errors(shop: DescriptorSet) -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    m = manifest(request="schemas/list.json")
    rc = build_contract(m, {"schemas/list.json": schema}, shop).route(m.routes[0])
    assert rc is not None
    found = check(rc, {"id": UUID}, {}, b"[" + b",".join([b'"x"'] * 50) + b"]")
    assert len(found) == 20 and found[0].pointer == "/body/0"


def test_a_json_pointer_escapes_slash_and_tilde() -> None:
    m = parse_manifest(
        '[plugin]\nname = "a"\nversion = "1.0.0"\n[[route]]\nmethod = "POST"\npath = "/x"\nhandler = "h"\n'
        'request = "s.json"\n'
    )
    schema = {"type": "object", "properties": {"a/b": {"type": "string"}, "c~d": {"type": "string"}}}
    rc = build_contract(m, {"s.json": schema}, None).route(m.routes[0])
    assert rc is not None
    found = rc.check_request({}, lambda _: [], b'{"a/b": 1, "c~d": 2}')
    assert [f.pointer for f in found] == ["/body/a~1b", "/body/c~0d"]


def test_answers_are_checked_against_their_status(order: Any) -> None:
    assert order.check_response(200, b'{"orderId": "1"}') == []
    assert [f.pointer for f in order.check_response(200, b'{"state": "LOST"}')] == ["/body/state"]
    assert order.check_response(204, b"") is None
    assert order.check_response(204, b"{}")[0].reason == "status 204 is declared without a body"
    assert order.check_response(500, b"anything") is None  # not declared: not checked


def test_the_shipped_examples_resolve() -> None:
    # notes: its schema files, embedded by the build; hello: greeter.v1.HelloReply from its descriptors.
    from arcana.wasm_binary import DESCRIPTORS_SECTION, MANIFEST_SECTION, SCHEMAS_SECTION, custom_sections

    root = Path(__file__).resolve().parents[2] / "plugins"
    for name in ("notes", "hello"):
        sections = custom_sections((root / name / f"{name}.wasm").read_bytes())
        m = parse_manifest(sections[MANIFEST_SECTION].decode())
        files, problems = parse_schemas_section(sections.get(SCHEMAS_SECTION))
        raw = sections.get(DESCRIPTORS_SECTION)
        contract = build_contract(m, files, DescriptorSet.parse(raw) if raw else None)
        assert problems == [] and contract.routes, name


def test_the_manifest_docs_name_every_refused_keyword() -> None:
    from arcana.contract import UNSUPPORTED_KEYWORDS

    text = (Path(__file__).resolve().parents[2] / "docs" / "manifest.md").read_text()
    assert [k for k in sorted(UNSUPPORTED_KEYWORDS) if f"`{k}`" not in text] == []
