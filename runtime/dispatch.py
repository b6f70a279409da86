"""The transport-agnostic core of a request: route, envelope, call, check.

Edges parse their transport into an ``HttpRequest`` (later a gRPC call),
call in here, and serialize what comes back; errors are ``ArcanaError`` and
each edge maps them once.
"""

from __future__ import annotations

import logging

from arcana.auth.service import require_role
from arcana.auth.tokens import Principal
from arcana.descriptors import DescriptorError
from arcana.envelopes import (
    HttpRequest,
    HttpResponse,
    grpc_envelope,
    http_envelope,
    parse_grpc_output,
    parse_http_output,
)
from arcana.errors import ArcanaError, MethodNotAllowed, NotFound, PluginFailed, ValidationFailed
from arcana.paths import Match
from arcana.registry import LoadedPlugin, RouteTarget, RpcTarget, Snapshot
from arcana_host.capability import CallContext

logger = logging.getLogger("arcana.dispatch")


def route_http(snapshot: Snapshot, method: str, path: str) -> Match[RouteTarget]:
    found = snapshot.routes.match(method, path)
    if found is None:
        raise NotFound(f"no route for {path}")
    if isinstance(found, frozenset):
        allowed = ", ".join(sorted(found))
        raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {allowed}", found)
    return found


def _log_refused(exc: ArcanaError, plugin: LoadedPlugin, request_id: str) -> None:
    """A refused plugin output is the operator's business: its detail goes to the log, never the client."""
    if exc.detail:
        logger.warning(
            "plugin output refused: %s",
            exc.detail,
            extra={"plugin": plugin.name, "plugin_version": plugin.manifest.version, "request_id": request_id},
        )


def authorize(public: bool, roles: tuple[str, ...], principal: Principal | None) -> None:
    """RBAC from the manifest, before the plugin runs: 401 without a principal, 403 without a role."""
    if not public:
        require_role(principal, roles)


async def call_http(match: Match[RouteTarget], req: HttpRequest, principal: Principal | None = None) -> HttpResponse:
    plugin, route = match.target.plugin, match.target.route
    authorize(route.public, route.roles, principal)
    context = CallContext(plugin.name, plugin.manifest.version, req.request_id, req.principal)
    try:
        if route.abi == "raw":
            output = await plugin.pool.call(route.handler, req.body, context)
            return HttpResponse(200, output, {"content-type": route.content_type})
        envelope = http_envelope(req, route.path.raw, match.params)
        output = await plugin.pool.call(route.handler, envelope, context)
        return parse_http_output(plugin.name, output)
    except ArcanaError as exc:
        _log_refused(exc, plugin, req.request_id)
        raise


async def call_grpc(
    target: RpcTarget,
    data: bytes,
    metadata: dict[str, str],
    request_id: str,
    traceparent: str,
    principal: Principal | None = None,
) -> bytes:
    """Wire bytes in, wire bytes out: the plugin sees only proto3 JSON envelopes."""
    plugin, method = target.plugin, target.method
    authorize(target.entry.public, target.entry.roles, principal)
    who = principal.as_json() if principal else None
    context = CallContext(plugin.name, plugin.manifest.version, request_id, who)
    try:
        if target.entry.abi == "raw":
            return await plugin.pool.call(target.entry.handler, data, context)
        try:
            message = method.decode(data)
        except Exception as exc:  # protobuf raises DecodeError and, for bad UTF-8, others
            raise ValidationFailed(f"request is not a valid {method.input_type.DESCRIPTOR.full_name}") from exc
        envelope = grpc_envelope(method.full_name, message, metadata, request_id, traceparent, who)
        output = await plugin.pool.call(target.entry.handler, envelope, context)
        try:
            return method.encode(parse_grpc_output(plugin.name, output))
        except DescriptorError as exc:
            raise PluginFailed(f"plugin '{plugin.name}' returned a malformed response", detail=str(exc)) from exc
    except ArcanaError as exc:
        _log_refused(exc, plugin, request_id)
        raise
