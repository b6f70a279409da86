"""Envelopes in, responses out: JSON and binary bodies, and every way an output can be malformed."""

from __future__ import annotations

import base64
import json

import pytest

from arcana.envelopes import HttpRequest, http_envelope, parse_grpc_output, parse_http_output
from arcana.errors import ErrorCode, PluginFailed, ValidationFailed


def _req(body: bytes, content_type: str) -> HttpRequest:
    return HttpRequest("POST", "/api/v1/x/1", {"q": ["a", "b"]}, {"content-type": content_type}, body, "rid", "tp")


def test_json_body_is_embedded_as_json() -> None:
    env = json.loads(
        http_envelope(_req(b'{"a":[1,2]}', "application/json; charset=utf-8"), "/api/v1/x/{id}", {"id": "1"})
    )
    assert env == {
        "kind": "http",
        "method": "POST",
        "path": "/api/v1/x/1",
        "route": "/api/v1/x/{id}",
        "params": {"id": "1"},
        "query": {"q": ["a", "b"]},
        "headers": {"content-type": "application/json; charset=utf-8"},
        "principal": None,
        "request_id": "rid",
        "traceparent": "tp",
        "body": {"a": [1, 2]},
    }


def test_binary_body_arrives_as_base64() -> None:
    env = json.loads(http_envelope(_req(b"\x00\xff", "application/octet-stream"), "/r", {}))
    assert base64.b64decode(env["body_base64"]) == b"\x00\xff" and "body" not in env


def test_malformed_json_body_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        http_envelope(_req(b"{nope", "application/json"), "/r", {})


def test_response_defaults_and_header_case() -> None:
    out = parse_http_output("p", b'{"body":{"ok":true},"headers":{"X-A":"b"}}')
    assert (out.status, out.body, out.headers) == (
        200,
        b'{"ok":true}',
        {"x-a": "b", "content-type": "application/json"},
    )


def test_binary_response_from_base64() -> None:
    out = parse_http_output("p", b'{"status":201,"body_base64":"AAE="}')
    assert (out.status, out.body, out.headers["content-type"]) == (201, b"\x00\x01", "application/octet-stream")


def test_plugin_error_keeps_its_code() -> None:
    with pytest.raises(Exception) as info:
        parse_http_output("p", b'{"error":{"code":"NOT_FOUND","message":"no note 4"}}')
    assert info.value.code == ErrorCode.NOT_FOUND and str(info.value) == "no note 4"


@pytest.mark.parametrize(
    "output, why",
    [
        (b"\x00garbage", "output is not JSON"),
        (b"[1,2]", "output must be a JSON object"),
        (b'{"status":"nope"}', "status must be an integer"),
        (b'{"status":99}', "status must be an integer"),
        (b'{"headers":{"a":1}}', "headers must be an object of strings"),
        (b'{"bogus":1}', "unknown response fields"),
        (b'{"body_base64":"***"}', "not valid base64"),
        (b'{"error":"boom"}', "error must be an object"),
        (b'{"error":{"code":"TEAPOT"}}', "unknown error code"),
    ],
)
def test_malformed_output_is_plugin_failed_without_leaking_details(output: bytes, why: str) -> None:
    with pytest.raises(PluginFailed) as info:
        parse_http_output("p", output)
    assert why in info.value.detail
    assert info.value.message == "plugin 'p' returned a malformed response"


@pytest.mark.parametrize("status", [204, 304])
@pytest.mark.parametrize(
    "fields",
    [
        '"body": {"ok": true}',
        '"body_base64": "AAE="',
        '"body": "", "headers": {"Content-Type": "text/plain", "Content-Length": "5", "ETag": "\\"v1\\""}',
    ],
)
def test_a_204_or_304_carries_no_body_nor_its_type_whatever_the_plugin_wrote(status: int, fields: str) -> None:
    out = parse_http_output("p", f'{{"status": {status}, {fields}}}'.encode())
    assert (out.status, out.body) == (status, b"")
    assert "content-type" not in out.headers and "content-length" not in out.headers
    if "ETag" in fields:  # the other headers stay: a 304's validators are its point
        assert out.headers["etag"] == '"v1"'


def test_a_grpc_reply_that_is_not_an_envelope_hints_abi_raw_in_its_detail() -> None:
    with pytest.raises(PluginFailed) as info:
        parse_grpc_output("p", b'{"count": 3}')
    assert 'set abi = "raw"' in info.value.detail and "abi" not in info.value.message
