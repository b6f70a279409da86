"""What each guest SDK makes of the host's replies, run under Extism with stub host functions.

A host function answers with the offset of a JSON reply, or 0 when it has no
reply at all (the kernel could not allocate one, or its dispatch failed). The
SDKs turn 0 into the error INTERNAL "host call failed", never into an empty
success, and hand every error code of the model to the handler unchanged.

Probes: ``storeprobe`` (Zig) and ``asprobe`` (AssemblyScript) answer a store
binding's error as their own; ``forbidden`` (C) outputs the reply of its
``store_get`` call verbatim; ``plugins/echo`` (Zig) logs before it answers.
"""

from __future__ import annotations

import json
from typing import Any

import extism
import pytest
import wasmtime

from arcana.errors import ErrorCode
from conftest import FIXTURES, ROOT, build_cached

pytestmark = pytest.mark.toolchain

NAMESPACE = "extism:host/user"
HOST_CALL_FAILED = {"error": {"code": "INTERNAL", "message": "host call failed"}}
KV_GET = {"kind": "http", "method": "POST", "path": "/probe", "body": {"call": "kv_get", "key": "k"}}
PROBES = {"zig": "storeprobe", "assemblyscript": "asprobe"}


def _stubbed(wasm: bytes, reply: bytes | None) -> extism.Plugin:
    """`wasm` with every host function it imports answering `reply` (None: offset 0)."""
    imports = wasmtime.Module(wasmtime.Engine(), wasm).imports

    def answer(plugin: extism.CurrentPlugin, params: list[Any], results: list[Any], *user_data: Any) -> None:
        if reply is None:
            results[0].value = 0
        else:
            plugin.return_bytes(results[0], reply)

    signature = ([extism.ValType.I64], [extism.ValType.I64])
    stubs = [
        extism.host_fn(name=i.name, namespace=NAMESPACE, signature=signature)(answer)
        for i in imports
        if i.module == NAMESPACE and i.name is not None
    ]
    assert stubs, "the probe imports no host function"
    return extism.Plugin({"wasm": [{"data": wasm}], "timeout_ms": 5000}, functions=stubs)


@pytest.fixture(scope="module")
def probes() -> dict[str, bytes]:
    return {sdk: build_cached(FIXTURES / name).read_bytes() for sdk, name in PROBES.items()}


@pytest.mark.parametrize("sdk", PROBES)
def test_typed_binding_answers_internal_when_the_host_gives_no_reply(probes: dict[str, bytes], sdk: str) -> None:
    out = _stubbed(probes[sdk], None).call("probe", json.dumps(KV_GET))
    assert json.loads(out) == HOST_CALL_FAILED


def test_c_host_call_replies_internal_when_the_host_gives_no_reply() -> None:
    wasm = build_cached(FIXTURES / "forbidden").read_bytes()
    assert json.loads(_stubbed(wasm, None).call("forbidden", b"{}")) == HOST_CALL_FAILED


def test_c_host_call_passes_the_host_reply_through() -> None:
    wasm = build_cached(FIXTURES / "forbidden").read_bytes()
    reply = {"error": {"code": "NOT_FOUND", "message": "no such document"}}
    assert json.loads(_stubbed(wasm, json.dumps(reply).encode()).call("forbidden", b"{}")) == reply


@pytest.mark.parametrize("code", [c.value for c in ErrorCode])
@pytest.mark.parametrize("sdk", PROBES)
def test_typed_binding_hands_every_error_code_of_the_host_to_the_handler(
    probes: dict[str, bytes], sdk: str, code: str
) -> None:
    reply = {"error": {"code": code, "message": f"host says {code}"}}
    out = _stubbed(probes[sdk], json.dumps(reply).encode()).call("probe", json.dumps(KV_GET))
    assert json.loads(out) == reply


def test_log_without_a_reply_leaves_the_handler_answering() -> None:
    wasm = build_cached(ROOT / "plugins" / "echo").read_bytes()
    envelope: dict[str, Any] = {"kind": "http", "method": "POST", "body": {"a": 1}}
    out = _stubbed(wasm, None).call("echo", json.dumps(envelope))
    assert json.loads(out) == {"status": 200, "headers": {}, "body": {"echo": {"a": 1}}}


def test_the_assemblyscript_sdk_leaves_out_the_body_of_a_204(probes: dict[str, bytes]) -> None:
    envelope = {**KV_GET, "body": {"call": "empty"}}
    out = json.loads(bytes(_stubbed(probes["assemblyscript"], b"{}").call("probe", json.dumps(envelope))))
    assert out == {"status": 204, "headers": {"x-probe": "empty"}}


def test_the_assemblyscript_json_array_builder_writes_valid_json(probes: dict[str, bytes]) -> None:
    envelope = {**KV_GET, "body": {"call": "list"}}
    out = json.loads(bytes(_stubbed(probes["assemblyscript"], b"{}").call("probe", json.dumps(envelope))))
    assert out["body"] == {"result": ['a"b', -2, True, {"n": 1}, None]}


def test_the_zig_sdk_reads_a_grpc_message_and_its_metadata(probes: dict[str, bytes]) -> None:
    envelope = {"kind": "grpc", "method": "x.v1.S/M", "message": {"name": "Ada"}, "metadata": {"x-probe": "p"}}
    out = json.loads(bytes(_stubbed(probes["zig"], b"{}").call("probe", json.dumps(envelope))))
    assert out == {"message": {"name": "Ada", "probe": "p"}}
    no_metadata = {**envelope, "metadata": {}}
    out = json.loads(bytes(_stubbed(probes["zig"], b"{}").call("probe", json.dumps(no_metadata))))
    assert out == {"message": {"name": "Ada", "probe": None}}
