"""The gRPC edge in process: start_grpc_server(kernel) on a free port, plugins on the fake engine."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from arcana.descriptors import DescriptorSet
from arcana.edge.grpc import start_grpc_server
from arcana.kernel import Kernel
from arcana.kernel_protos import kernel_descriptors
from arcana.types import CallContext
from fakes import (
    REQUEST_ID_CASES,
    FakePlugin,
    Kernels,
    greeter_descriptors,
    manifest_toml,
    mint,
    reply,
    spin,
    trap,
    write_plugin,
)

GREETER = DescriptorSet.parse(greeter_descriptors())
SAY = GREETER.method("fake.v1.Greeter/Say")
Named, Counted = SAY.input_type, SAY.output_type
Scenario = Callable[[grpc.aio.Channel], Awaitable[Any]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def count_letters(envelope: Any, _context: CallContext) -> Any:
    return {"message": {"count": len(envelope["message"].get("name", ""))}}


def greeter(kernels: Kernels, handlers: Mapping[str, Any], **say: Any) -> FakePlugin:
    """A plugin serving fake.v1.Greeter/Say with handler ``say``, its descriptors as a sidecar greeter.pb."""
    plugin = kernels.engine.define("greeter", FakePlugin(dict(handlers)))
    entries = [{"method": "fake.v1.Greeter/Say", "handler": "say", **say}]
    path = write_plugin(kernels.plugins, manifest_toml("greeter", grpc=entries))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())
    return plugin


def kernel_on_a_free_port(kernels: Kernels) -> Kernel:
    return kernels(SERVER__HOST="127.0.0.1", SERVER__GRPC_PORT=str(free_port()))


def run(kernel: Kernel, scenario: Scenario) -> Any:
    """Start the gRPC server, load the plugins, run ``scenario`` on a channel to it, stop everything."""

    async def main() -> Any:
        server = await start_grpc_server(kernel)
        try:
            await kernel.load_all()
            address = f"127.0.0.1:{kernel.config.server.grpc_port}"
            async with grpc.aio.insecure_channel(address) as channel:
                return await scenario(channel)
        finally:
            await server.stop(None)

    return asyncio.run(main())


async def call(
    channel: grpc.aio.Channel, method: str, data: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> tuple[grpc.StatusCode, bytes | str, dict[str, str]]:
    """(status, reply bytes or error details, trailing metadata) of one unary call with raw bytes."""
    stub = channel.unary_unary(method)
    rpc = stub(data, metadata=metadata, timeout=10)
    try:
        answer: bytes | str = await rpc
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", dict(exc.trailing_metadata() or ())
    return await rpc.code(), answer, dict(await rpc.trailing_metadata() or ())


def auth(roles: tuple[str, ...] = ("user",)) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {mint('u-1', roles)}"),)


def test_a_plugin_method_is_transcoded_both_ways(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": count_letters})

    async def scenario(channel: grpc.aio.Channel) -> Any:
        metadata = (*auth(), ("x-request-id", "rid-g1"), ("x-custom", "v"))
        return await call(channel, "/fake.v1.Greeter/Say", Named(name="four").SerializeToString(), metadata)

    status, answer, trailing = run(kernel_on_a_free_port(kernels), scenario)
    assert status == grpc.StatusCode.OK and Counted.FromString(answer).count == 4
    assert trailing["x-request-id"] == "rid-g1"
    envelope = plugin.calls[0].input
    assert envelope["message"] == {"name": "four"} and envelope["metadata"]["x-custom"] == "v"
    assert "authorization" not in envelope["metadata"]
    assert envelope["principal"] == {"sub": "u-1", "roles": ["user"]} and envelope["request_id"] == "rid-g1"


def test_the_request_id_rule_on_grpc_is_the_rest_edges(kernels: Kernels) -> None:
    greeter(kernels, {"say": count_letters}, public=True)
    cases = [(given, kept) for given, kept in REQUEST_ID_CASES if given.isascii()]  # metadata is ASCII

    async def scenario(channel: grpc.aio.Channel) -> list[str]:
        seen = []
        for given, _ in cases:
            _, _, trailing = await call(channel, "/fake.v1.Greeter/Say", b"", (("x-request-id", given),))
            seen.append(trailing["x-request-id"])
        return seen

    seen = run(kernel_on_a_free_port(kernels), scenario)
    for (given, kept), rid in zip(cases, seen, strict=True):
        assert (rid == given) is kept, f"x-request-id {given!r} answered as {rid!r}"


def test_unauthenticated_and_permission_denied_come_before_the_plugin_runs(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": count_letters}, roles=["admin"])

    async def scenario(channel: grpc.aio.Channel) -> list[tuple[grpc.StatusCode, Any, Any]]:
        return [
            await call(channel, "/fake.v1.Greeter/Say", b""),
            await call(channel, "/fake.v1.Greeter/Say", b"", (("authorization", "Bearer forged"),)),
            await call(channel, "/fake.v1.Greeter/Say", b"", auth(("user",))),
        ]

    anonymous, forged, user = run(kernel_on_a_free_port(kernels), scenario)
    assert anonymous[0] == forged[0] == grpc.StatusCode.UNAUTHENTICATED
    assert anonymous[1].startswith("UNAUTHORIZED: ")
    assert user[0] == grpc.StatusCode.PERMISSION_DENIED and user[1].startswith("FORBIDDEN: ")
    assert plugin.calls == []


def test_a_message_over_the_body_limit_is_resource_exhausted(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": count_letters}, public=True)
    kernel = kernels(SERVER__HOST="127.0.0.1", SERVER__GRPC_PORT=str(free_port()), SERVER__MAX_BODY_BYTES="64")

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [
            await call(channel, "/fake.v1.Greeter/Say", Named(name="x" * 100).SerializeToString()),
            await call(channel, "/fake.v1.Greeter/Say", Named(name="x" * 10).SerializeToString()),
        ]

    (big, _, _), (small, _, _) = run(kernel, scenario)
    assert (big, small) == (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OK)
    assert len(plugin.calls) == 1


def test_undecodable_bytes_are_invalid_argument(kernels: Kernels) -> None:
    plugin = greeter(kernels, {"say": count_letters}, public=True)

    async def scenario(channel: grpc.aio.Channel) -> Any:
        return await call(channel, "/fake.v1.Greeter/Say", b"\xff\xff\xff\xff")

    status, details, _ = run(kernel_on_a_free_port(kernels), scenario)
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "VALIDATION_FAILED: request is not a valid fake.v1.Named"
    assert plugin.calls == []


def test_a_kernel_exception_and_a_trap_are_internal_without_details(
    kernels: Kernels, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_e: Any, _c: CallContext) -> Any:
        raise RuntimeError("grpc-internal-detail")

    plugin = kernels.engine.define("faulty", FakePlugin({"bug": broken, "trap": trap()}))
    entries = [
        {"method": f"fake.v1.Greeter/{m}", "handler": h, "public": True} for m, h in (("Say", "bug"), ("Count", "trap"))
    ]
    path = write_plugin(kernels.plugins, manifest_toml("faulty", grpc=entries))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [
            await call(channel, "/fake.v1.Greeter/Say", b""),
            await call(channel, "/fake.v1.Greeter/Count", b""),
        ]

    with caplog.at_level(logging.ERROR):
        bug, trapped = run(kernel_on_a_free_port(kernels), scenario)
    assert bug[:2] == (grpc.StatusCode.INTERNAL, "INTERNAL: internal error")
    assert any(r.exc_info and "grpc-internal-detail" in str(r.exc_info[1]) for r in caplog.records)
    assert trapped[:2] == (grpc.StatusCode.INTERNAL, "PLUGIN_FAILED: plugin 'faulty' failed while handling the request")
    assert len(plugin.calls) == 2


def test_a_plugin_past_its_time_limit_is_deadline_exceeded(kernels: Kernels) -> None:
    kernels.engine.define("greeter", FakePlugin({"say": spin()}))
    entries = [{"method": "fake.v1.Greeter/Say", "handler": "say", "public": True}]
    path = write_plugin(kernels.plugins, manifest_toml("greeter", grpc=entries, limits={"timeout_ms": 20}))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())

    async def scenario(channel: grpc.aio.Channel) -> Any:
        return await call(channel, "/fake.v1.Greeter/Say", b"")

    status, details, _ = run(kernel_on_a_free_port(kernels), scenario)
    assert status == grpc.StatusCode.DEADLINE_EXCEEDED and details.startswith("PLUGIN_TIMEOUT: ")


def test_methods_follow_reloads_and_health_follows_them(kernels: Kernels) -> None:
    greeter(kernels, {"say": count_letters}, public=True)
    kernel = kernel_on_a_free_port(kernels)
    path = kernels.plugins / "greeter.wasm"

    async def health(channel: grpc.aio.Channel) -> int:
        stub = health_pb2_grpc.HealthStub(channel)
        return (await stub.Check(health_pb2.HealthCheckRequest(service="fake.v1.Greeter"))).status

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        served = await call(channel, "/fake.v1.Greeter/Say", b"")
        up = await health(channel)
        path.unlink()
        await kernel.sync([path])
        gone = await call(channel, "/fake.v1.Greeter/Say", b"")
        return [served[0], up, gone[0], await health(channel)]

    served, up, gone, down = run(kernel, scenario)
    assert (served, up) == (grpc.StatusCode.OK, health_pb2.HealthCheckResponse.SERVING)
    assert (gone, down) == (grpc.StatusCode.UNIMPLEMENTED, health_pb2.HealthCheckResponse.NOT_SERVING)


def test_a_plugins_own_error_keeps_its_code(kernels: Kernels) -> None:
    greeter(kernels, {"say": reply({"error": {"code": "NOT_FOUND", "message": "no such greeting"}})}, public=True)

    async def scenario(channel: grpc.aio.Channel) -> Any:
        return await call(channel, "/fake.v1.Greeter/Say", b"")

    status, details, _ = run(kernel_on_a_free_port(kernels), scenario)
    assert (status, details) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND: no such greeting")


# ---------------------------------------------------------------- the kernel's own services


def login_request(email: str = "a@example.com", password: str = "long enough password") -> bytes:
    method = kernel_descriptors().method("arcana.auth.v1.AuthService/Login")
    return method.input_type(email=email, password=password).SerializeToString()


def test_kernel_services_answer_internal_without_the_text_when_something_inside_raises(
    kernels: Kernels, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = kernel_on_a_free_port(kernels)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("identity-internal-detail")

    monkeypatch.setattr(kernel.identity, "login", broken)
    monkeypatch.setattr(kernel, "plugins_view", broken)

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [
            await call(channel, "/arcana.auth.v1.AuthService/Login", login_request(), (("x-request-id", "rid-k1"),)),
            await call(channel, "/arcana.admin.v1.AdminService/ListPlugins", b"", auth(("admin",))),
        ]

    with caplog.at_level(logging.ERROR):
        login, listing = run(kernel, scenario)
    for status, details, _ in (login, listing):
        assert (status, details) == (grpc.StatusCode.INTERNAL, "INTERNAL: internal error")
    assert login[2]["x-request-id"] == "rid-k1"
    logged = [r for r in caplog.records if r.exc_info and "identity-internal-detail" in str(r.exc_info[1])]
    assert len(logged) == 2


def test_kernel_services_keep_the_error_model(kernels: Kernels) -> None:
    greeter(kernels, {"say": count_letters}, public=True)
    kernel = kernel_on_a_free_port(kernels)
    list_plugins = kernel_descriptors().method("arcana.admin.v1.AdminService/ListPlugins")

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [
            await call(channel, "/arcana.auth.v1.AuthService/Login", login_request(password="wrong password!")),
            await call(channel, "/arcana.auth.v1.AuthService/Login", b"\xff\xff"),
            await call(channel, "/arcana.admin.v1.AdminService/ListPlugins", b""),
            await call(channel, "/arcana.admin.v1.AdminService/ListPlugins", b"", auth(("user",))),
            await call(channel, "/arcana.admin.v1.AdminService/ListPlugins", b"", auth(("admin",))),
            await call(channel, "/arcana.admin.v1.AdminService/Nope", b""),
        ]

    bad_login, junk, anonymous, user, admin, unknown = run(kernel, scenario)
    assert bad_login[:2] == (grpc.StatusCode.UNAUTHENTICATED, "INVALID_CREDENTIALS: invalid email or password")
    assert junk[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert (anonymous[0], user[0]) == (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    assert admin[0] == grpc.StatusCode.OK
    assert [p.name for p in list_plugins.output_type.FromString(admin[1]).plugins] == ["greeter"]
    assert unknown[0] == grpc.StatusCode.UNIMPLEMENTED
