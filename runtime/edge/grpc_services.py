"""Standard gRPC services kept current across reloads: health and reflection."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

from arcana.descriptors import DescriptorSet
from arcana.registry import Snapshot

HEALTH_SERVICE = "grpc.health.v1.Health"
REFLECTION_SERVICE = "grpc.reflection.v1alpha.ServerReflection"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _file_protos(module: Any) -> list[descriptor_pb2.FileDescriptorProto]:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)
    return [proto]


class LiveReflection(ReflectionServicer):
    """Server reflection over the current snapshot: plugin services appear and vanish with reloads."""

    def __init__(self, kernel_sets: list[DescriptorSet]) -> None:
        self._kernel_files = [f for s in kernel_sets for f in s.files]
        self._kernel_files += _file_protos(health_pb2) + _file_protos(reflection_pb2)
        self._kernel_services = sorted(
            {n for s in kernel_sets for n in s.services()} | {HEALTH_SERVICE, REFLECTION_SERVICE}
        )
        self.update_from(None)

    def update_from(self, snapshot: Snapshot | None) -> None:
        """Rebuild the pool once per snapshot; readers swap to it in one assignment."""
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        files = list(self._kernel_files)
        names = set(self._kernel_services)
        for plugin in snapshot.plugins.values() if snapshot else []:
            if plugin.descriptors is not None:
                files += plugin.descriptors.files
                names |= {m.service for m in plugin.rpc.values()}
        for file in files:
            if file.name not in added:  # equal names from two plugins: the first wins here
                added.add(file.name)
                pool.Add(file)
        self._pool, self._service_names = pool, tuple(sorted(names))


async def sync_health(health: health_aio.HealthServicer, snapshot: Snapshot, known: set[str]) -> None:
    """Per-service health follows the route table: served services SERVING, unloaded ones NOT_SERVING."""
    current = {m.service for p in snapshot.plugins.values() for m in p.rpc.values()}
    for service in current:
        await health.set(service, SERVING)
    for service in known - current:
        await health.set(service, NOT_SERVING)
    known |= current
