"""The hello plugin, on the author test harness (docs/testing.md): its route and its gRPC method."""

from __future__ import annotations

from pathlib import Path

from arcana.testing import HarnessFactory

# The committed build: the plugin's tests check what ships (tests/sdk/test_build.py checks it matches the source).
HELLO = Path(__file__).resolve().parent.parent / "hello.wasm"


def test_the_route_greets_the_name_in_the_path(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    r = h.get("/api/v1/hello/Ada")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == {"message": "Hello, Ada!"}


def test_a_percent_encoded_name_arrives_decoded(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    assert h.get("/api/v1/hello/Zo%C3%AB").json() == {"message": "Hello, Zoë!"}


def test_the_route_is_public(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    assert h.get("/api/v1/hello/Ada", as_user="ada", roles=["user"]).json() == {"message": "Hello, Ada!"}
    assert h.get("/api/v1/hello/Ada").status == 200


def test_the_grpc_method_greets_in_proto3_json(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    reply = h.grpc("greeter.v1.Greeter/SayHello", {"name": "Ada"})
    assert reply.ok and reply.message == {"message": "Hello, Ada!"}


def test_a_message_that_does_not_fit_the_proto_is_invalid_argument(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    reply = h.grpc("greeter.v1.Greeter/SayHello", {"nom": "Ada"})
    assert reply.code == "INVALID_ARGUMENT" and reply.error is not None
    assert reply.error["code"] == "VALIDATION_FAILED"


def test_a_path_it_does_not_serve_is_not_found(arcana_plugin: HarnessFactory) -> None:
    h = arcana_plugin(HELLO)
    r = h.get("/api/v1/goodbye/Ada")
    assert r.status == 404 and r.error_code == "NOT_FOUND"


def test_the_answer_matches_the_schema_the_manifest_declares(arcana_plugin: HarnessFactory) -> None:
    # [route.responses] 200 = "greeter.v1.HelloReply": the gRPC reply's message is the REST answer's schema too.
    h = arcana_plugin(HELLO)
    [route] = h.manifest.routes
    contract = h.kernel.registry.snapshot.plugins["hello"].contract.route(route)
    assert contract is not None and contract.response_schemas[200] is not None
    assert contract.response_schemas[200]["properties"] == {"message": {"type": "string"}}
    answer = h.get("/api/v1/hello/Ada")
    assert contract.check_response(answer.status, answer.body) == []
    assert contract.check_response(200, b'{"message": 7}') != []
