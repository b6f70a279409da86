"""gRPC call metrics (arcana.edge.grpc_metrics): by method and status code, unknown methods in one series."""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from arcana.edge.grpc_metrics import status_name
from arcana.edge.metrics import exposition
from arcana.types import CallContext
from fakes import FakePlugin, Kernels, greeter_descriptors, manifest_toml, reply, spin, trap, write_plugin
from metrics_text import Series, label_values, samples, value
from runtime.edge.test_grpc_inprocess import Named, auth, call, kernel_on_a_free_port, run

SAY, COUNT = "/fake.v1.Greeter/Say", "/fake.v1.Greeter/Count"
SLOW = Named(name="slow").SerializeToString()


def scraped() -> dict[Series, float]:
    return samples(exposition().decode())


def grew(before: dict[Series, float], name: str, **labels: str) -> float:
    return value(scraped(), name, **labels) - value(before, name, **labels)


def trap_or_spin(envelope: Any, context: CallContext) -> Any:
    """Runs past its time limit when asked for "slow", else traps."""
    return (spin() if envelope["message"].get("name") == "slow" else trap())(envelope, context)


def serve_greeter(kernels: Kernels) -> None:
    kernels.engine.define("greeter", FakePlugin({"say": reply({"message": {"count": 1}}), "count": trap_or_spin}))
    entries = [
        {"method": "fake.v1.Greeter/Say", "handler": "say", "roles": ["user"]},
        {"method": "fake.v1.Greeter/Count", "handler": "count", "public": True},
    ]
    path = write_plugin(kernels.plugins, manifest_toml("greeter", grpc=entries, limits={"timeout_ms": 20}))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())


def test_plugin_methods_are_counted_by_status_code_and_a_trap_apart_from_a_timeout(kernels: Kernels) -> None:
    serve_greeter(kernels)
    before = scraped()

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [
            (await call(channel, SAY, b"", auth()))[0],
            (await call(channel, SAY, b""))[0],
            (await call(channel, COUNT, b""))[0],
            (await call(channel, COUNT, SLOW))[0],
        ]

    codes = run(kernel_on_a_free_port(kernels), scenario)
    assert codes == [
        grpc.StatusCode.OK,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ]
    for method, code in ((SAY, "OK"), (SAY, "UNAUTHENTICATED"), (COUNT, "INTERNAL"), (COUNT, "DEADLINE_EXCEEDED")):
        assert grew(before, "arcana_grpc_requests_total", method=method, code=code, plugin="greeter") == 1, code
    assert grew(before, "arcana_grpc_request_duration_seconds_count", method=SAY, plugin="greeter") == 2
    assert grew(before, "arcana_plugin_calls_total", plugin="greeter", outcome="trap") == 1
    assert grew(before, "arcana_plugin_calls_total", plugin="greeter", outcome="timeout") == 1


def test_unknown_methods_share_one_series(kernels: Kernels) -> None:
    before = scraped()

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [(await call(channel, f"/scan.v1.Probe/M{i}", b""))[0] for i in range(20)]

    assert set(run(kernel_on_a_free_port(kernels), scenario)) == {grpc.StatusCode.UNIMPLEMENTED}
    assert grew(before, "arcana_grpc_requests_total", method="<unknown>", code="UNIMPLEMENTED", plugin="") == 20
    assert not any("scan.v1" in m for m in label_values(scraped(), "arcana_grpc_requests_total", "method"))


def test_kernel_services_are_counted_with_an_empty_plugin(kernels: Kernels) -> None:
    before = scraped()
    check = health_pb2.HealthCheckRequest(service="").SerializeToString()

    async def scenario(channel: grpc.aio.Channel) -> list[Any]:
        return [
            (await call(channel, "/grpc.health.v1.Health/Check", check))[0],
            (await call(channel, "/arcana.admin.v1.AdminService/ListPlugins", b""))[0],
        ]

    assert run(kernel_on_a_free_port(kernels), scenario) == [grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED]
    health = {"method": "/grpc.health.v1.Health/Check", "code": "OK", "plugin": ""}
    admin = {"method": "/arcana.admin.v1.AdminService/ListPlugins", "code": "UNAUTHENTICATED", "plugin": ""}
    assert grew(before, "arcana_grpc_requests_total", **health) == 1
    assert grew(before, "arcana_grpc_requests_total", **admin) == 1


def test_status_names_from_every_form_grpc_reports() -> None:
    assert status_name(None) == "OK"
    assert status_name(grpc.StatusCode.NOT_FOUND) == "NOT_FOUND"
    assert status_name(14) == "UNAVAILABLE"
    assert status_name(999) == "UNKNOWN"
