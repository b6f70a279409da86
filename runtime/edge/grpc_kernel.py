"""The kernel's own gRPC services (``proto/``): auth and admin, transcoded like plugin methods.

Each method takes the request as proto3 JSON and the caller's metadata and
returns the reply as proto3 JSON; errors are ``ArcanaError`` and anything
else goes through the core's one catch-all, so no exception text reaches a
client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from arcana.core import decode_message, request_id, require_role, unexpected
from arcana.descriptors import DescriptorSet, RpcMethod
from arcana.edge.grpc_wire import Behavior, abort, metadata_of
from arcana.edge.jobs_ops import JobsAdmin, selection
from arcana.errors import ArcanaError
from arcana.kernel import Kernel
from arcana.types import Principal
from arcana.views import FailureView, PluginsView, PluginView

# A kernel method gets the request message and the caller's metadata (":peer" is the caller's address,
# ":deadline" the caller's deadline on time.monotonic(), empty when it set none).
KernelMethod = Callable[[dict[str, Any], dict[str, str]], Awaitable[dict[str, Any]]]


class KernelMethods(grpc.GenericRpcHandler):
    def __init__(self, methods: dict[str, tuple[RpcMethod, KernelMethod]]) -> None:
        self._methods = methods

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        found = self._methods.get(handler_call_details.method)
        return None if found is None else grpc.unary_unary_rpc_method_handler(_behavior(*found))


def _behavior(method: RpcMethod, impl: KernelMethod) -> Behavior:
    async def behavior(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        metadata = metadata_of(context)
        rid = request_id(metadata.get("x-request-id", ""))
        context.set_trailing_metadata((("x-request-id", rid),))
        metadata[":peer"] = (context.peer() or "grpc").rsplit(":", 1)[0]  # the address, not the port
        remaining = context.time_remaining()
        metadata[":deadline"] = "" if remaining is None else repr(time.monotonic() + remaining)
        try:
            try:
                return method.encode(await impl(decode_message(method, request), metadata))
            except ArcanaError:
                raise
            except Exception as exc:  # the one catch-all, as for plugin calls
                raise unexpected(exc, rid, method=method.full_name) from exc
        except ArcanaError as exc:
            await abort(context, exc)
        raise AssertionError("unreachable: abort raises")

    return behavior


def kernel_methods(kernel: Kernel, protos: DescriptorSet) -> dict[str, tuple[RpcMethod, KernelMethod]]:
    async def login(m: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        # The password check goes on in its thread after the client gives up (a cancelled task cannot
        # stop a thread): the caller's deadline tells the service not to store a session nobody receives.
        address, deadline = metadata.get(":peer", "grpc"), metadata.get(":deadline", "")
        pair = await asyncio.to_thread(
            kernel.identity.login,
            m.get("email", ""),
            m.get("password", ""),
            address,
            float(deadline) if deadline else None,
        )
        return camel(pair.as_json())

    async def refresh(m: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        return camel((await asyncio.to_thread(kernel.identity.refresh, m.get("refreshToken", ""))).as_json())

    async def logout(m: dict[str, Any], _: dict[str, str]) -> dict[str, Any]:
        await asyncio.to_thread(kernel.identity.logout, m.get("refreshToken", ""))
        return {}

    async def list_plugins(_: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        require_role(kernel.authenticate(metadata.get("authorization", "")), ("admin",))
        return plugins_message(kernel.plugins_view())

    impls: dict[str, KernelMethod] = {
        "arcana.admin.v1.AdminService/ListPlugins": list_plugins,
        **_job_methods(kernel),
        "arcana.auth.v1.AuthService/Login": login,
        "arcana.auth.v1.AuthService/Refresh": refresh,
        "arcana.auth.v1.AuthService/Logout": logout,
    }
    return {"/" + name: (protos.method(name), impl) for name, impl in impls.items()}


def _job_methods(kernel: Kernel) -> dict[str, KernelMethod]:
    """The queue's admin RPCs: the REST routes' core (arcana.edge.jobs_ops), in proto3 JSON."""
    jobs = JobsAdmin(kernel)

    def admin(metadata: dict[str, str]) -> Principal:
        return require_role(kernel.authenticate(metadata.get("authorization", "")), ("admin",))

    async def stats(_: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        admin(metadata)
        return await jobs.stats()

    async def get_job(m: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        admin(metadata)
        return job_message(await jobs.job(m.get("id", "")))

    async def dead(m: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        admin(metadata)
        # proto3 has no "unset": a limit of 0 asks for the default page.
        listing = await jobs.dead(m.get("limit") or None, m.get("offset", 0))
        return {**listing, "items": [job_message(j) for j in listing["items"]]}

    async def replay(m: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        by = admin(metadata)
        return {"replayed": await jobs.replay(selection(m), by)}

    async def purge(m: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
        by = admin(metadata)
        return {"purged": await jobs.purge(selection(m), by)}

    service = "arcana.admin.v1.AdminService/"
    return {
        service + "GetQueueStats": stats,
        service + "GetJob": get_job,
        service + "ListDeadJobs": dead,
        service + "ReplayDeadJobs": replay,
        service + "PurgeDeadJobs": purge,
    }


def job_message(job: dict[str, Any]) -> dict[str, Any]:
    """A job's JSON (``Job.as_json``) as an ``arcana.admin.v1.Job``: unset optionals left out."""
    return camel({k: v for k, v in job.items() if v is not None})


def _plugin_message(p: PluginView) -> dict[str, Any]:
    return {
        "name": p.name,
        "version": p.version,
        "state": p.state,
        "source": p.source,
        "routes": [{"method": r.method, "path": r.path, "handler": r.handler} for r in p.routes],
        "grpcMethods": list(p.grpc),
        "lastError": list(p.last_error or ()),
        "breaker": p.breaker,
    }


def _failure_message(f: FailureView) -> dict[str, Any]:
    return {
        "name": f.name or "",
        "source": f.source,
        "errors": list(f.errors),
        "stillServing": f.still_serving is not None,
    }


def plugins_message(view: PluginsView) -> dict[str, Any]:
    """The admin listing as an ``arcana.admin.v1.ListPluginsResponse`` in proto3 JSON."""
    return {
        "plugins": [_plugin_message(p) for p in view.plugins],
        "failures": [_failure_message(f) for f in view.failures],
    }


def camel(data: dict[str, Any]) -> dict[str, Any]:
    """snake_case keys -> proto3 JSON lowerCamelCase."""
    return {k.split("_")[0] + "".join(p.title() for p in k.split("_")[1:]): v for k, v in data.items()}
