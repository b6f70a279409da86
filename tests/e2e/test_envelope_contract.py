"""What a handler receives, pinned from outside: the envelope of section 3.2 over REST and gRPC."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from conftest import build_variant, install
from e2e.server import ArcanaServer

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def server(tmp_path: Path, fixture_wasm: dict[str, Path], start_server: Callable[..., ArcanaServer]) -> ArcanaServer:
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(fixture_wasm["inspect"], folder, "inspect")
    return start_server(folder)


def test_rest_envelope_carries_route_params_query_headers_and_body(server: ArcanaServer) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/test/inspect/a%20b?q=1&q=2&x=",
        json={"n": [1, {"k": None}]},
        headers={"x-request-id": "rid-1", "traceparent": TRACE, "X-Custom": "Yes"},
    )
    env = r.json()
    assert env["kind"] == "http" and env["method"] == "POST"
    assert env["path"] == "/api/v1/test/inspect/a b" and env["route"] == "/api/v1/test/inspect/{id}"
    assert env["params"] == {"id": "a b"} and env["query"] == {"q": ["1", "2"], "x": [""]}
    assert env["headers"]["x-custom"] == "Yes" and env["headers"]["content-type"] == "application/json"
    assert env["body"] == {"n": [1, {"k": None}]} and "body_base64" not in env
    assert (env["request_id"], env["traceparent"], env["principal"]) == ("rid-1", TRACE, None)


def test_rest_binary_body_arrives_base64(server: ArcanaServer) -> None:
    env = httpx.post(
        f"{server.url}/api/v1/test/inspect/1", content=b"\x00\xffbin", headers={"content-type": "image/png"}
    ).json()
    assert env["body_base64"] == "AP9iaW4=" and "body" not in env


def test_grpc_envelope_carries_proto3_json_and_metadata(server: ArcanaServer) -> None:
    # Probe{text="hé", big=2^53+1, tags=["a","b"]}, encoded by hand to stay independent of generated code.
    text = "hé".encode()
    probe = b"\x0a" + bytes([len(text)]) + text + b"\x10\x81\x80\x80\x80\x80\x80\x80\x10" + b"\x1a\x01a\x1a\x01b"
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(
            "/inspect.v1.Inspect/Envelope", request_serializer=lambda b: b, response_deserializer=lambda b: b
        )
        raw = call(probe, metadata=[("traceparent", TRACE), ("x-request-id", "g-1"), ("x-team", "blue")])
    # Seen{json=...}: field 1, length-delimited.
    assert raw[0] == 0x0A
    length, shift, i = 0, 0, 1
    while True:
        length |= (raw[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if not raw[i - 1] & 0x80:
            break
    env = json.loads(raw[i : i + length])
    assert env["kind"] == "grpc" and env["method"] == "inspect.v1.Inspect/Envelope"
    assert env["message"] == {"text": "hé", "big": str(2**53 + 1), "tags": ["a", "b"]}
    assert env["metadata"]["x-team"] == "blue" and env["metadata"]["traceparent"] == TRACE
    assert (env["request_id"], env["traceparent"]) == ("g-1", TRACE)


def test_a_204_from_a_real_plugin_goes_out_without_a_body_and_the_connection_stays_usable(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    # inspect, answering its envelope as the body of a 204: the kernel must drop it.
    wasm = build_variant("inspect", tmp_path, {"respondJson(200, req.raw)": "respondJson(204, req.raw)"})
    folder = tmp_path / "plugins"
    folder.mkdir()
    install(wasm, folder, "inspect")
    server = start_server(folder)
    with socket.create_connection(("127.0.0.1", httpx.URL(server.url).port), timeout=10) as conn:
        ask = b"POST /api/v1/test/inspect/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}"
        conn.sendall(ask + ask)  # two requests on one connection: a leaked body would garble the second answer
        seen = b""
        while seen.count(b"HTTP/1.1 ") < 2 or not seen.endswith(b"\r\n\r\n"):
            chunk = conn.recv(65536)
            assert chunk, seen
            seen += chunk
    first, second = seen.split(b"\r\n\r\n")[:2]
    for head in (first, second):
        assert head.startswith(b"HTTP/1.1 204 ") and b"content-length" not in head.lower(), seen
    assert b"content-type" not in first.lower() and seen.count(b"\r\n\r\n") == 2 and seen.endswith(b"\r\n\r\n")
