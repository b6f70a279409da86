"""The gRPC edge against a real server: generated stubs, grpc-js, reflection, health, errors, reload, mTLS."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from arcana_sdk.protoc import compile_proto_dir
from arcana_sdk.wasm_sections import append_custom_section
from conftest import ROOT
from e2e.grpc_support import generate_stubs, make_pki
from e2e.server import ArcanaServer, admin_headers

GREETER_PROTO = ROOT / "plugins" / "hello" / "proto" / "greeter.proto"
HOSTILE = {"trap": "Trap", "loop": "Loop", "garbage": "Garbage", "badshape": "BadShape"}
SIDECAR = (
    '[plugin]\nname = "{name}"\nversion = "1.0.0"\n[capabilities]\nlog = true\n[limits]\ntimeout_ms = 500\n'
    '[[grpc]]\nmethod = "{method}"\nhandler = "{handler}"\npublic = true\n'
)


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    return generate_stubs(GREETER_PROTO, tmp_path_factory.mktemp("stubs"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, fixture_wasm: dict[str, Path]) -> Iterator[ArcanaServer]:
    work = tmp_path_factory.mktemp("grpc")
    folder = work / "plugins"
    (work / "protos").mkdir()
    shutil.copyfile(ROOT / "tests" / "fixtures" / "protos" / "hostile.proto", work / "protos" / "hostile.proto")
    descriptors = compile_proto_dir(work / "protos")
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    for name, method in {**HOSTILE, "echo": "Echo"}.items():
        source = ROOT / "plugins" / "echo" / "echo.wasm" if name == "echo" else fixture_wasm[name]
        shutil.copyfile(source, folder / f"g{name}.wasm")
        (folder / f"g{name}.pb").write_bytes(descriptors)
        (folder / f"g{name}.toml").write_text(
            SIDECAR.format(name=f"g{name}", method=f"hostile.v1.Hostile/{method}", handler=name)
        )
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "mismatch.wasm")
    (folder / "mismatch.pb").write_bytes(descriptors)
    (folder / "mismatch.toml").write_text(
        SIDECAR.format(name="mismatch", method="hostile.v1.Mismatch/Say", handler="hello")
    )
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "streamer.wasm")
    (folder / "streamer.pb").write_bytes(descriptors)
    (folder / "streamer.toml").write_text(
        SIDECAR.format(name="streamer", method="hostile.v1.Hostile/Stream", handler="hello")
    )
    server = ArcanaServer(folder, work, {"server": {"max_body_bytes": 4096}}).start()
    yield server
    server.stop()


def _unary(channel: grpc.Channel, method: str) -> Callable[..., Any]:
    return channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def test_generated_stub_calls_the_plugin_twin_of_the_rest_route(
    served: ArcanaServer, greeter: tuple[ModuleType, ModuleType]
) -> None:
    pb, stubs = greeter
    with grpc.insecure_channel(served.grpc_address) as channel:
        reply, call = stubs.GreeterStub(channel).SayHello.with_call(
            pb.HelloRequest(name='Ada "L"'), metadata=[("x-request-id", "rid-7")]
        )
    assert reply.message == 'Hello, Ada "L"!'
    assert dict(call.trailing_metadata())["x-request-id"] == "rid-7"
    assert httpx.get(f"{served.url}/api/v1/hello/Ada").json() == {"message": "Hello, Ada!"}


def test_an_independent_grpc_implementation_gets_the_same_answer(served: ArcanaServer) -> None:
    client = ROOT / "tests" / "e2e" / "node_client"
    if not (client / "node_modules").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=client, check=True, capture_output=True, timeout=300
        )
    out = subprocess.run(
        ["node", str(client / "say_hello.js"), served.grpc_address, str(GREETER_PROTO), "grpc-js"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == {"message": "Hello, grpc-js!"}


@pytest.mark.parametrize(
    "name, status",
    [
        ("trap", grpc.StatusCode.INTERNAL),
        ("loop", grpc.StatusCode.DEADLINE_EXCEEDED),
        ("garbage", grpc.StatusCode.INTERNAL),
        ("badshape", grpc.StatusCode.INTERNAL),
    ],
)
def test_hostile_plugins_get_mapped_status_codes(
    served: ArcanaServer, name: str, status: grpc.StatusCode, greeter: tuple[ModuleType, ModuleType]
) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _unary(channel, f"/hostile.v1.Hostile/{HOSTILE[name]}")(b"", timeout=10)
        assert info.value.code() == status
        assert "backtrace" not in info.value.details() and "Traceback" not in info.value.details()
        pb, stubs = greeter
        assert stubs.GreeterStub(channel).SayHello(pb.HelloRequest(name="ok")).message == "Hello, ok!"


def test_plugin_errors_reply_types_and_unknown_methods(served: ArcanaServer) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _unary(channel, "/hostile.v1.Hostile/Echo")(b"")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and info.value.details().startswith(
            "VALIDATION_FAILED: "
        )
        with pytest.raises(grpc.RpcError) as info:
            _unary(channel, "/hostile.v1.Mismatch/Say")(b"\x0a\x01x")
        assert info.value.code() == grpc.StatusCode.INTERNAL and "malformed" in info.value.details()
        with pytest.raises(grpc.RpcError) as info:
            _unary(channel, "/nope.v1.Nothing/Here")(b"")
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with pytest.raises(grpc.RpcError) as info:
            _unary(channel, "/greeter.v1.Greeter/SayHello")(b"\xff\xff\xff")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            _unary(channel, "/greeter.v1.Greeter/SayHello")(b"\x0a\x90\x4e" + b"a" * 10000)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_streaming_methods_are_refused_at_load_with_a_reason(served: ArcanaServer) -> None:
    failures = httpx.get(f"{served.url}/api/v1/admin/plugins", headers=admin_headers()).json()["failures"]
    streamer = next(f for f in failures if f["name"] == "streamer")
    assert any("streaming method; only unary methods are served" in e for e in streamer["errors"])


def test_reflection_lists_kernel_and_plugin_services_and_resolves_them(served: ArcanaServer) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {
            "greeter.v1.Greeter",
            "hostile.v1.Hostile",
            "arcana.admin.v1.AdminService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= services
        pool = descriptor_pool.DescriptorPool(database)
        method = pool.FindServiceByName("greeter.v1.Greeter").methods_by_name["SayHello"]
        assert method.input_type.fields_by_name["name"].type == method.input_type.fields_by_name["name"].TYPE_STRING


def test_health_overall_and_per_plugin_service(served: ArcanaServer) -> None:
    with grpc.insecure_channel(served.grpc_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="")).status == health_pb2.HealthCheckResponse.SERVING
        assert (
            health.Check(health_pb2.HealthCheckRequest(service="greeter.v1.Greeter")).status
            == health_pb2.HealthCheckResponse.SERVING
        )


def test_kernel_admin_service_lists_plugins(served: ArcanaServer, tmp_path: Path) -> None:
    pb, stubs = generate_stubs(ROOT / "proto" / "arcana" / "admin" / "v1" / "admin.proto", tmp_path / "admin")
    with grpc.insecure_channel(served.grpc_address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            stubs.AdminServiceStub(channel).ListPlugins(pb.ListPluginsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stubs.AdminServiceStub(channel).ListPlugins(
            pb.ListPluginsRequest(), metadata=list(admin_headers().items())
        )
    hello = next(p for p in reply.plugins if p.name == "hello")
    assert (
        list(hello.grpc_methods) == ["greeter.v1.Greeter/SayHello"] and hello.routes[0].path == "/api/v1/hello/{name}"
    )
    assert any(f.name == "streamer" for f in reply.failures)


def _retagged(wasm: bytes, n: int) -> bytes:
    """The same module with different bytes, so the kernel sees a new version."""
    return append_custom_section(wasm, "test.generation", str(n).encode())


def test_hot_reload_during_a_stream_of_grpc_calls_fails_none(
    tmp_path: Path, greeter: tuple[ModuleType, ModuleType], start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    original = (ROOT / "plugins" / "hello" / "hello.wasm").read_bytes()
    (folder / "hello.wasm").write_bytes(original)
    server = start_server(folder)
    pb, stubs = greeter
    stop, failures, calls = threading.Event(), [], [0]

    def client() -> None:
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = stubs.GreeterStub(channel)
            while not stop.is_set():
                try:
                    assert stub.SayHello(pb.HelloRequest(name="r"), timeout=10).message == "Hello, r!"
                    calls[0] += 1
                except (grpc.RpcError, AssertionError) as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(20):
            module = _retagged(original, n)
            (folder / ".next").write_bytes(module)
            (folder / ".next").replace(folder / "hello.wasm")
            deadline = time.monotonic() + 15
            while (
                httpx.get(f"{server.url}/api/v1/admin/plugins", headers=admin_headers()).json()["plugins"][0]["sha256"]
                != hashlib.sha256(module).hexdigest()
            ):
                assert time.monotonic() < deadline, server.logs()[-2000:]
                time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and calls[0] > 20


def test_unloading_removes_the_method_health_and_reflection(
    tmp_path: Path, start_server: Callable[..., ArcanaServer]
) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    server = start_server(folder)
    (folder / "hello.wasm").unlink()
    with grpc.insecure_channel(server.grpc_address) as channel:
        deadline = time.monotonic() + 15
        while True:
            try:
                _unary(channel, "/greeter.v1.Greeter/SayHello")(b"\x0a\x01x")
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNIMPLEMENTED
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(service="greeter.v1.Greeter")).status
            == health_pb2.HealthCheckResponse.NOT_SERVING
        )
        assert "greeter.v1.Greeter" not in set(ProtoReflectionDescriptorDatabase(channel).get_services())


def test_mtls_refuses_clients_without_a_certificate_from_the_ca(
    tmp_path: Path, greeter: tuple[ModuleType, ModuleType], start_server: Callable[..., ArcanaServer]
) -> None:
    pki = make_pki(tmp_path / "pki")
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copyfile(ROOT / "plugins" / "hello" / "hello.wasm", folder / "hello.wasm")
    server = start_server(
        folder,
        {
            "server": {
                "grpc_tls": {
                    "cert_file": str(pki["server.pem"]),
                    "key_file": str(pki["server.key"]),
                    "client_ca_file": str(pki["ca.pem"]),
                }
            }
        },
    )
    pb, stubs = greeter
    ca = pki["ca.pem"].read_bytes()

    def say(credentials: grpc.ChannelCredentials) -> str:
        with grpc.secure_channel(server.grpc_address, credentials) as channel:
            return str(stubs.GreeterStub(channel).SayHello(pb.HelloRequest(name="tls"), timeout=5).message)

    assert (
        say(grpc.ssl_channel_credentials(ca, pki["client.key"].read_bytes(), pki["client.pem"].read_bytes()))
        == "Hello, tls!"
    )
    for credentials in (
        grpc.ssl_channel_credentials(ca),
        grpc.ssl_channel_credentials(ca, pki["stranger.key"].read_bytes(), pki["stranger.pem"].read_bytes()),
    ):
        with pytest.raises(grpc.RpcError) as info:
            say(credentials)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(server.grpc_address) as plain, pytest.raises(grpc.RpcError):
        stubs.GreeterStub(plain).SayHello(pb.HelloRequest(name="x"), timeout=5)
