"""The gRPC edge: one dynamic handler over the live route table, plus kernel services.

Every call looks its method up in ``kernel.registry.snapshot`` at arrival, so
methods added, replaced or removed by hot reload are served or gone without
a restart; a call in flight keeps the plugin version it found. Messages are
raw bytes here and transcoded by the dispatch core.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection_pb2_grpc

from arcana.auth.service import require_role
from arcana.config import TlsConfig
from arcana.descriptors import DescriptorSet, RpcMethod
from arcana.dispatch import call_grpc
from arcana.edge.admin import plugins_listing
from arcana.edge.grpc_errors import grpc_status, status_message
from arcana.edge.grpc_services import LiveReflection, sync_health
from arcana.errors import ArcanaError, ErrorCode, ValidationFailed
from arcana.kernel import Kernel
from arcana.kernel_protos import kernel_descriptors
from arcana.registry import RpcTarget

logger = logging.getLogger("arcana.grpc")
# A kernel method gets the request message and the caller's metadata.
KernelMethod = Callable[[dict[str, Any], dict[str, str]], Awaitable[dict[str, Any]]]


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


def _request_id(metadata: dict[str, str]) -> str:
    given = metadata.get("x-request-id", "")
    return (
        given
        if 0 < len(given) <= 128 and given.replace("-", "").replace("_", "").replace(".", "").isalnum()
        else uuid.uuid4().hex
    )


async def _abort(context: grpc.aio.ServicerContext, exc: ArcanaError) -> None:
    await context.abort(grpc_status(exc), status_message(exc))


class PluginMethods(grpc.GenericRpcHandler):
    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        target = self._kernel.registry.snapshot.rpc.get(details.method)  # type: ignore[attr-defined]
        return None if target is None else grpc.unary_unary_rpc_method_handler(_plugin_behavior(self._kernel, target))


def _plugin_behavior(
    kernel: Kernel, target: RpcTarget
) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
    async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        metadata = _metadata(context)
        rid = _request_id(metadata)
        authorization = metadata.pop("authorization", "")
        # Trailing, not initial, metadata: it rides on the status frame instead of costing one more.
        context.set_trailing_metadata((("x-request-id", rid),))
        try:
            principal = kernel.auth.authenticate(authorization)
            return await call_grpc(target, request, metadata, rid, metadata.get("traceparent", ""), principal)
        except ArcanaError as exc:
            await _abort(context, exc)
        except Exception:  # a kernel bug: logged with its trace, the client gets INTERNAL and no trace
            logger.exception("unhandled error in gRPC call", extra={"request_id": rid, "plugin": target.plugin.name})
            await _abort(context, ArcanaError("internal error", code=ErrorCode.INTERNAL))
        raise AssertionError("unreachable: abort raises")

    return behavior


class KernelMethods(grpc.GenericRpcHandler):
    """The kernel's own services from proto/, transcoded like plugin methods."""

    def __init__(self, methods: dict[str, tuple[RpcMethod, KernelMethod]]) -> None:
        self._methods = methods

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        found = self._methods.get(details.method)  # type: ignore[attr-defined]
        if found is None:
            return None
        method, impl = found

        async def behavior(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            try:
                try:
                    message = method.decode(request)
                except Exception as exc:
                    raise ValidationFailed(f"request is not a valid {method.input_type.DESCRIPTOR.full_name}") from exc
                metadata = _metadata(context)
                metadata[":peer"] = (context.peer() or "grpc").rsplit(":", 1)[0]  # the address, not the port
                return method.encode(await impl(message, metadata))
            except ArcanaError as exc:
                await _abort(context, exc)
            raise AssertionError("unreachable: abort raises")

        return grpc.unary_unary_rpc_method_handler(behavior)


def _kernel_methods(kernel: Kernel, protos: DescriptorSet) -> dict[str, tuple[RpcMethod, KernelMethod]]:
    auth = kernel.auth

    def peer_address(metadata: dict[str, str]) -> str:
        return metadata.get(":peer", "grpc")

    async def login(m: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        pair = await asyncio.to_thread(auth.login, m.get("email", ""), m.get("password", ""), peer_address(metadata))
        return _camel(pair.as_json())

    async def refresh(m: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        return _camel((await asyncio.to_thread(auth.refresh, m.get("refreshToken", ""))).as_json())

    async def logout(m: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        await asyncio.to_thread(auth.logout, m.get("refreshToken", ""))
        return {}

    async def list_plugins(_: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        require_role(auth.authenticate(metadata.get("authorization", "")), ("admin",))
        listing = plugins_listing(kernel)
        return {
            "plugins": [
                {
                    "name": p["name"],
                    "version": p["version"],
                    "state": p["state"],
                    "source": p["source"],
                    "routes": [{k: r[k] for k in ("method", "path", "handler")} for r in p["routes"]],
                    "grpcMethods": p["grpc"],
                    "lastError": p["last_error"] or [],
                }
                for p in listing["plugins"]
            ],
            "failures": [
                {
                    "name": f["name"] or "",
                    "source": f["source"],
                    "errors": f["errors"],
                    "stillServing": f["still_serving"],
                }
                for f in listing["failures"]
            ],
        }

    impls: dict[str, KernelMethod] = {
        "arcana.admin.v1.AdminService/ListPlugins": list_plugins,
        "arcana.auth.v1.AuthService/Login": login,
        "arcana.auth.v1.AuthService/Refresh": refresh,
        "arcana.auth.v1.AuthService/Logout": logout,
    }
    return {"/" + name: (protos.method(name), impl) for name, impl in impls.items()}


def _camel(data: dict[str, Any]) -> dict[str, Any]:
    """snake_case keys -> proto3 JSON lowerCamelCase."""
    return {k.split("_")[0] + "".join(p.title() for p in k.split("_")[1:]): v for k, v in data.items()}


def _credentials(tls: TlsConfig) -> grpc.ServerCredentials:
    key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    ca = Path(tls.client_ca_file).read_bytes() if tls.client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


async def start_grpc_server(kernel: Kernel) -> grpc.aio.Server:
    """Build, bind and start the gRPC server; the caller stops it."""
    server_config = kernel.config.server
    limit = server_config.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.so_reuseport", 0),
        ]
    )
    protos = kernel_descriptors()
    health = health_aio.HealthServicer()
    reflection = LiveReflection([protos])
    server.add_generic_rpc_handlers((KernelMethods(_kernel_methods(kernel, protos)), PluginMethods(kernel)))
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection, server)
    known: set[str] = set()

    async def follow(snapshot: Any) -> None:
        reflection.update_from(snapshot)
        await sync_health(health, snapshot, known)

    kernel.on_change(follow)
    address = f"{server_config.host}:{server_config.grpc_port}"
    if server_config.grpc_tls.enabled:
        server.add_secure_port(address, _credentials(server_config.grpc_tls))
    else:
        server.add_insecure_port(address)
    await server.start()
    return server
