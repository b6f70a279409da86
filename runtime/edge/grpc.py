"""The gRPC edge: one dynamic handler over the live route table, plus the kernel's services.

Every call looks its method up in the request core at arrival, so methods
added, replaced or removed by hot reload are served or gone without a
restart; a call in flight keeps the plugin version it found. This module only
parses metadata, serializes and maps errors to status codes (one table); the
call itself is the core's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection_pb2_grpc

from arcana.config import TlsConfig
from arcana.core import RequestCore, request_id
from arcana.edge.grpc_errors import grpc_status
from arcana.edge.grpc_kernel import KernelMethods, kernel_methods
from arcana.edge.grpc_metrics import KERNEL, GrpcMetrics
from arcana.edge.grpc_services import LiveReflection, sync_health
from arcana.edge.grpc_wire import Behavior, abort, metadata_of
from arcana.errors import ArcanaError
from arcana.kernel import Kernel
from arcana.kernel_protos import kernel_descriptors
from arcana.registry import RpcTarget, Snapshot
from arcana.tracing import end_server_span, rpc_server_span, traceparent_of

# Codes that are the server's failure, not the caller's (OpenTelemetry's rule for gRPC server spans).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class PluginMethods(grpc.GenericRpcHandler):
    def __init__(self, core: RequestCore) -> None:
        self._core = core
        # The handler made for each method's current target, reused while the route table keeps
        # that target (a reload makes a new one); one entry per method served, no more.
        self._handlers: dict[str, tuple[RpcTarget, grpc.RpcMethodHandler[bytes, bytes]]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = handler_call_details.method
        target = self._core.rpc_target(method)
        if target is None:
            return None
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is target:
            return cached[1]
        handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(self._behavior(target))
        self._handlers[method] = (target, handler)
        return handler

    def _behavior(self, target: RpcTarget) -> Behavior:
        core = self._core

        async def behavior(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            metadata = metadata_of(context)
            rid = request_id(metadata.get("x-request-id", ""))
            authorization = metadata.pop("authorization", "")
            # Trailing, not initial, metadata: it rides on the status frame instead of costing one more.
            context.set_trailing_metadata((("x-request-id", rid),))
            client = (context.peer() or "grpc").rsplit(":", 1)[0]  # the address, not the port
            traceparent, span, tracing = None, None, core.tracing
            if tracing is not None:  # off: no span, and the metadata's traceparent goes on as it came
                span = rpc_server_span(tracing, target, rid, metadata.get("traceparent", ""))
                traceparent = traceparent_of(span)
            try:
                await core.limit_address(client)
                reply = await core.call_grpc(target, request, metadata, rid, authorization, client, traceparent)
            except ArcanaError as exc:
                if span is not None:
                    code = grpc_status(exc)
                    end_server_span(span, "rpc.grpc.status_code", code.value[0], code in _SERVER_FAULTS)
                await abort(context, exc)
                raise AssertionError("unreachable: abort raises") from None
            if span is not None:
                end_server_span(span, "rpc.grpc.status_code", grpc.StatusCode.OK.value[0], False)
            return reply

        return behavior


def _plugin_of(core: RequestCore) -> Callable[[str], str]:
    """The plugin serving a gRPC method now, for the metrics' plugin label ("" for the kernel's services)."""

    def plugin_of(method: str) -> str:
        target = core.rpc_target(method)
        return KERNEL if target is None else target.plugin.name

    return plugin_of


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


async def start_grpc_server(kernel: Kernel) -> grpc.aio.Server:
    """Build, bind and start the gRPC server; the caller stops it."""
    server_config = kernel.config.server
    options = [
        ("grpc.max_receive_message_length", server_config.max_body_bytes),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        # Off for one process, so a second server on the port fails to bind as it should; on when
        # `--workers N` processes share the port (the kernel spreads connections over them).
        ("grpc.so_reuseport", 1 if server_config.workers > 1 else 0),
    ]
    server = grpc.aio.server(options=options, interceptors=[GrpcMetrics(_plugin_of(kernel.core))])
    protos = kernel_descriptors()
    health = health_aio.HealthServicer()
    reflection = LiveReflection([protos])
    server.add_generic_rpc_handlers((KernelMethods(kernel_methods(kernel, protos)), PluginMethods(kernel.core)))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection, server)  # type: ignore[no-untyped-call]
    known: set[str] = set()

    async def follow(snapshot: Snapshot) -> None:
        reflection.update_from(snapshot)
        await sync_health(health, snapshot, known)

    kernel.on_change(follow)
    if kernel.ready:  # started after the first load (one of several processes): catch up with it
        await follow(kernel.registry.snapshot)
    address = f"{server_config.host}:{server_config.grpc_port}"
    if server_config.grpc_tls.enabled:
        server.add_secure_port(address, _credentials(server_config.grpc_tls))
    else:
        server.add_insecure_port(address)
    await server.start()
    return server
