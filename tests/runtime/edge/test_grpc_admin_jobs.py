"""The queue's admin RPCs (arcana.admin.v1.AdminService) in process, over the in-memory fake backend."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from arcana.config import QueueConfig
from arcana.edge.grpc import start_grpc_server
from arcana.kernel import Kernel
from arcana.kernel_protos import kernel_descriptors
from arcana.queue.jobs import JobQueue
from arcana.queue.types import JobSpec, JobState, Priority
from fakes import Kernels, mint
from queue_fakes import OPERATOR, MemoryQueueBackend

NOW = 1_800_000_000.0
SERVICE = "arcana.admin.v1.AdminService/"
Metadata = tuple[tuple[str, str], ...]
Answer = tuple[grpc.StatusCode, dict[str, Any] | str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def auth(roles: tuple[str, ...]) -> Metadata:
    return (("authorization", f"Bearer {mint('root', roles)}"),)


ADMIN = auth(("admin",))


@pytest.fixture
def backend() -> MemoryQueueBackend:
    return MemoryQueueBackend(OPERATOR)


@pytest.fixture
def kernel(kernels: Kernels, backend: MemoryQueueBackend, monkeypatch: pytest.MonkeyPatch) -> Kernel:
    queue = JobQueue(QueueConfig(), backend, clock=lambda: NOW)
    monkeypatch.setattr(Kernel, "jobs", property(lambda _kernel: queue))
    return kernels(SERVER__HOST="127.0.0.1", SERVER__GRPC_PORT=str(free_port()))


async def call(channel: grpc.aio.Channel, name: str, request: dict[str, Any], metadata: Metadata = ADMIN) -> Answer:
    """(status, reply as proto3 JSON with defaults, or the error's details) of one admin RPC."""
    method = kernel_descriptors().method(SERVICE + name)
    data = json_format.ParseDict(request, method.input_type()).SerializeToString()
    try:
        reply = await channel.unary_unary(f"/{SERVICE}{name}")(data, metadata=metadata, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    message: Message = method.output_type.FromString(reply)
    return grpc.StatusCode.OK, json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def run(kernel: Kernel, scenario: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        server = await start_grpc_server(kernel)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{kernel.config.server.grpc_port}") as channel:
                return await scenario(channel)
        finally:
            await server.stop(None)

    return asyncio.run(main())


def test_every_job_rpc_needs_an_admin(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    dead = backend.seed_dead("t", "boom", NOW)
    requests = [
        ("GetQueueStats", {}),
        ("GetJob", {"id": dead}),
        ("ListDeadJobs", {}),
        ("ReplayDeadJobs", {"all": True}),
        ("PurgeDeadJobs", {"all": True}),
    ]

    async def scenario(channel: grpc.aio.Channel) -> list[grpc.StatusCode]:
        codes = []
        for name, request in requests:
            codes.append((await call(channel, name, request, ()))[0])
            codes.append((await call(channel, name, request, auth(("user",))))[0])
        return codes

    denied = [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED]
    assert run(kernel, scenario) == denied * len(requests)
    assert backend.call_log == ["enqueue"]


def test_stats_job_and_dead_letters_match_the_rest_answers(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    backend.enqueue(JobSpec("t", priority=Priority.CRITICAL), NOW - 1)
    older = backend.seed_dead("mail.send", "smtp down", NOW - 5)
    newer = backend.seed_dead("mail.send", "smtp still down", NOW)

    async def scenario(channel: grpc.aio.Channel) -> list[Answer]:
        return [
            await call(channel, "GetQueueStats", {}),
            await call(channel, "GetJob", {"id": older}),
            await call(channel, "GetJob", {"id": "job-404"}),
            await call(channel, "ListDeadJobs", {}),
            await call(channel, "ListDeadJobs", {"limit": 1, "offset": 1}),
        ]

    stats, job, missing, dead, second = run(kernel, scenario)
    assert stats == (grpc.StatusCode.OK, {
        "ready": {"critical": "1", "high": "0", "normal": "0", "low": "0"},
        "delayed": "0", "running": "0", "dead": "2", "succeeded": "0",
    })  # fmt: skip
    shown = job[1]
    assert (shown["id"], shown["state"], shown["error"], shown["attempts"]) == (older, "dead", "smtp down", 4)
    assert (shown["maxRetries"], shown["finishedAt"], shown["priority"]) == (3, NOW - 5, "normal")
    assert missing[0] == grpc.StatusCode.NOT_FOUND and missing[1].startswith("NOT_FOUND: ")
    assert [j["id"] for j in dead[1]["items"]] == [newer, older] and dead[1]["limit"] == 50
    assert [j["id"] for j in second[1]["items"]] == [older]


def test_replay_and_purge_select_by_ids_or_all_and_refuse_a_bad_selection(
    kernel: Kernel, backend: MemoryQueueBackend
) -> None:
    first, second, third = (backend.seed_dead("t", "boom", NOW - n) for n in range(3))
    events: list[dict[str, Any]] = []
    kernel.bus.subscribe(events.append)

    async def scenario(channel: grpc.aio.Channel) -> list[Answer]:
        return [
            await call(channel, "ReplayDeadJobs", {}),
            await call(channel, "ReplayDeadJobs", {"ids": [first], "all": True}),
            await call(channel, "ListDeadJobs", {"limit": 501}),
            await call(channel, "ReplayDeadJobs", {"ids": [first]}),
            await call(channel, "PurgeDeadJobs", {"all": True}),
        ]

    empty, both, too_many, replayed, purged = run(kernel, scenario)
    for refused in (empty, both, too_many):
        assert refused[0] == grpc.StatusCode.INVALID_ARGUMENT and refused[1].startswith("VALIDATION_FAILED: ")
    assert replayed == (grpc.StatusCode.OK, {"replayed": "1"}) and purged == (grpc.StatusCode.OK, {"purged": "2"})
    assert set(backend.jobs) == {first} and backend.jobs[first].state == JobState.QUEUED
    assert [(e["topic"], e["payload"]["ids"]) for e in events] == [
        ("admin.jobs_replayed", [first]),
        ("admin.jobs_purged", None),
    ]
    assert {second, third}.isdisjoint(backend.jobs)


def test_a_backend_that_is_down_is_unavailable(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    backend.down = True

    async def scenario(channel: grpc.aio.Channel) -> Answer:
        return await call(channel, "GetQueueStats", {})

    status, details = run(kernel, scenario)
    assert status == grpc.StatusCode.UNAVAILABLE and details == "SERVICE_UNAVAILABLE: the queue backend is unavailable"
