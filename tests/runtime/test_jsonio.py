"""Strict JSON: every way a client (or plugin) document can be bad is one clean refusal, never a crash."""

from __future__ import annotations

import json

import pytest

from arcana.envelopes import HttpRequest, http_envelope, parse_http_output, plugin_error
from arcana.errors import PluginFailed, ServiceUnavailable, ValidationFailed
from arcana.jsonio import MAX_DEPTH, JsonRejected, client_json, decode, decode_object, encode, nesting_depth

DEEP = b"[" * 100_000 + b"]" * 100_000
# 981 levels: where json.loads inside a request handler first raised RecursionError.
DEEP_981 = b"[" * 981 + b"]" * 981


@pytest.mark.parametrize(
    "data, why",
    [
        (DEEP, "nested too deeply"),
        (DEEP_981, "nested too deeply"),
        (b'{"n": ' + b"1" * 4301 + b"}", "out of range"),  # Python's int-string limit made json.loads raise ValueError
        (b"1e999", "out of range"),  # json.loads read infinity, then wrote the invalid token Infinity
        (b"NaN", "malformed"),
        (b'"\xff\xfe"', "UTF-8"),
        (b'"\\ud800"', None),  # a lone surrogate (msgspec's wording varies)
        (b'{"a": 1} trailing', "trailing"),
        (b"", "truncated"),
        (b"{nope", "malformed"),
    ],
)
def test_bad_documents_are_refused_with_a_reason(data: bytes, why: str | None) -> None:
    with pytest.raises(JsonRejected, match=why):
        decode(data)


def _nested(depth: int) -> bytes:
    """Objects and arrays in turn, ``depth`` levels around a 1."""
    opens = [b'{"a":' if i % 2 == 0 else b"[" for i in range(depth)]
    closes = [b"}" if i % 2 == 0 else b"]" for i in reversed(range(depth))]
    return b"".join(opens) + b"1" + b"".join(closes)


@pytest.mark.parametrize(
    "doc, depth",
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [{"b": "[[[{{{"}]}', 3),  # brackets in strings do not count
        (b'["\\", "\\"[", "]]]"]', 1),  # nor escaped quotes and backslashes
        (b"[[1], [[2]], {}]", 3),
        (_nested(300), 300),
    ],
)
def test_nesting_depth_counts_only_structure(doc: bytes, depth: int) -> None:
    assert nesting_depth(doc) == depth


def test_client_documents_may_nest_up_to_max_depth_and_no_further() -> None:
    assert client_json(_nested(MAX_DEPTH)) == json.loads(_nested(MAX_DEPTH))
    with pytest.raises(ValidationFailed, match=f"nested more than {MAX_DEPTH} levels deep"):
        client_json(_nested(MAX_DEPTH + 1))
    # Many containers side by side are not depth.
    wide = b"[" + b",".join([b'[{"a": [1]}]'] * 10_000) + b"]"
    assert len(client_json(wide)) == 10_000


def test_plugin_output_is_held_only_to_the_parsers_own_bound() -> None:
    assert decode(_nested(MAX_DEPTH + 50)) == json.loads(_nested(MAX_DEPTH + 50))


def test_good_documents_decode_as_the_standard_library_does() -> None:
    doc = b'{"a": [1, 2.5, -3e2, true, null, "\\u00e9"], "big": ' + b"9" * 4300 + b"}"
    assert decode(doc) == json.loads(doc)
    assert decode(b"[" * 200 + b"]" * 200) == json.loads(b"[" * 200 + b"]" * 200)


def test_decode_object_wants_an_object() -> None:
    assert decode_object(b'{"a":1}') == {"a": 1}
    with pytest.raises(JsonRejected, match="must be a JSON object"):
        decode_object(b"[1]")


def test_encode_is_compact_and_escapes_lone_surrogates_instead_of_failing() -> None:
    assert encode({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert json.loads(encode({"sub": "\ud800"})) == {"sub": "\ud800"}


def test_encode_refuses_a_value_too_deep_to_write() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(JsonRejected, match="nested too deeply"):
        encode(deep)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", " GZIP "])
def test_client_json_refuses_compressed_bodies(encoding: str) -> None:
    with pytest.raises(ValidationFailed, match="not supported for a JSON body; send it uncompressed"):
        client_json(b"\x1f\x8b\x08garbage", encoding)


def test_client_json_is_validation_failed_and_accepts_identity() -> None:
    assert client_json(b'{"a":1}', "identity") == {"a": 1}
    with pytest.raises(ValidationFailed, match="request body is not valid JSON: it is nested too deeply"):
        client_json(DEEP)


def _req(body: bytes, headers: dict[str, str]) -> HttpRequest:
    return HttpRequest("POST", "/api/v1/x", {}, headers, body, "rid")


@pytest.mark.parametrize(
    "body, headers",
    [
        (DEEP, {"content-type": "application/json"}),
        (b'{"n": ' + b"7" * 5000 + b"}", {"content-type": "application/json"}),
        (b'{"a": "\xc3\x28"}', {"content-type": "application/json"}),
        (b'{"a": 1}', {"content-type": "application/json", "content-encoding": "gzip"}),
    ],
)
def test_a_plugin_route_envelope_refuses_bad_json_as_validation_failed(body: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(ValidationFailed):
        http_envelope(_req(body, headers), "/api/v1/x", {})


def test_a_compressed_binary_body_still_reaches_the_plugin() -> None:
    headers = {"content-type": "application/octet-stream", "content-encoding": "gzip"}
    env = json.loads(http_envelope(_req(b"\x1f\x8b\x08", headers), "/api/v1/x", {}))
    assert env["body_base64"] == "H4sI"


@pytest.mark.parametrize("output", [DEEP, b'{"body": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"s": 1e999}'])
def test_plugin_output_that_cannot_be_handled_is_plugin_failed(output: bytes) -> None:
    with pytest.raises(PluginFailed) as info:
        parse_http_output("p", output)
    assert info.value.message == "plugin 'p' returned a malformed response"


def test_a_plugin_service_unavailable_carries_retry_after() -> None:
    error = plugin_error("p", {"code": "SERVICE_UNAVAILABLE", "message": "store down"})
    assert isinstance(error, ServiceUnavailable) and error.retry_after == 1 and error.message == "store down"
