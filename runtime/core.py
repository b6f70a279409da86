"""The one request core: every edge parses its transport, calls in here, and serializes.

A plugin call, whatever the transport, goes: per-address limit (the edge
calls ``limit_address`` before routing) -> route (the edge's lookup,
``route_http`` / ``rpc_target``) -> authenticate -> authorize -> the
manifest's rate limit (its decision's RateLimit-* headers go on the REST
answer) -> the route's schema (``arcana.contract``: VALIDATION_FAILED with the
fields, before an instance is borrowed) -> call context -> envelope -> pool call -> parse the
output -> errors. Only
``ArcanaError`` leaves this module; anything else is a kernel bug, logged
here once with its trace and answered as INTERNAL with no details
(``unexpected``). Request ids follow one rule (``request_id``). Every call
counts against the process's in-flight limit (``arcana.shedding``) while it runs.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import Token
from typing import Any

from google.protobuf.message import Error as ProtobufError
from prometheus_client import Counter

from arcana import logs
from arcana.auth.limits import address_key
from arcana.contract import RouteContract
from arcana.descriptors import RpcMethod
from arcana.envelopes import (
    UNPARSED,
    HttpRequest,
    HttpResponse,
    grpc_envelope,
    http_envelope,
    parse_grpc_output,
    parse_http_output,
)
from arcana.errors import (
    ArcanaError,
    DescriptorError,
    Forbidden,
    InternalError,
    MethodNotAllowed,
    PluginFailed,
    Unauthorized,
    ValidationFailed,
)
from arcana.paths import Match
from arcana.ratelimit import Decision, Limiter, MemoryLimiter, Rate
from arcana.raw_config import grpc_call_config, http_call_config
from arcana.registry import LoadedPlugin, Registry, RouteTarget, RpcTarget
from arcana.shedding import InFlightLimit, counted_in_flight
from arcana.tracing import Tracing
from arcana.types import CallContext, Principal

logger = logging.getLogger("arcana.core")
# A caller's request id is kept when it is a sane token (it may end up in logs and headers), else replaced.
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# `Authorization` header value -> principal (None when absent); raises Unauthorized when invalid.
Authenticate = Callable[[str], Principal | None]


# Development (server.validate_responses): plugin answers that break their route's declared response schema.
RESPONSE_MISMATCHES = Counter(
    "arcana_response_mismatches_total",
    "Plugin answers that do not match their route's declared response schema (server.validate_responses)",
    ["plugin"],
)
VALIDATION_MESSAGE = "the request does not match the route's schema"


# A manifest's few rate strings, parsed once each rather than on every call.
_parse_rate = functools.lru_cache(maxsize=1024)(Rate.parse)
# A client address -> its rate-limit key (IPv6: its /64), for the addresses seen most recently: parsing
# an address costs about 2 us, as much as the limit check itself (measured with bench/edge_cost.py's figures).
_address_key = functools.lru_cache(maxsize=4096)(address_key)


def request_id(given: str) -> str:
    """The caller's request id when it is a sane token, else a fresh one: the same rule on every edge."""
    return given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def unexpected(exc: BaseException, rid: str, **where: Any) -> InternalError:
    """The one catch-all: log a kernel bug with its trace, give the client INTERNAL and nothing else."""
    logger.error("unhandled error", exc_info=exc, extra={"request_id": rid, **where})
    return InternalError()


def require_role(principal: Principal | None, roles: tuple[str, ...]) -> Principal:
    """401 without a principal; 403 unless it holds one of ``roles`` (any role when empty)."""
    if principal is None:
        raise Unauthorized("authentication required")
    if roles and not set(roles) & set(principal.roles):
        raise Forbidden(f"requires one of the roles: {', '.join(roles)}")
    return principal


def decode_message(method: RpcMethod, data: bytes) -> dict[str, Any]:
    """Wire bytes -> proto3 JSON, or VALIDATION_FAILED naming the expected type."""
    try:
        return method.decode(data)
    except Exception as exc:  # protobuf raises DecodeError and, for bad UTF-8, others
        raise ValidationFailed(f"request is not a valid {method.input_type.DESCRIPTOR.full_name}") from exc


def check_message(method: RpcMethod, data: bytes) -> None:
    """A raw-ABI request must still be a valid message of its type, or VALIDATION_FAILED.

    Left to the guest, malformed bytes were its failure (INTERNAL), and enough
    of them opened its circuit breaker for every client: the client's error
    must stay the client's. The parse runs in protobuf's C code (about a microsecond).
    """
    try:
        method.check(data)
    except (ProtobufError, ValueError) as exc:  # DecodeError; with the pure-Python backend, UnicodeDecodeError
        raise ValidationFailed(f"request is not a valid {method.input_type.DESCRIPTOR.full_name}") from exc


def check_request(contract: RouteContract, params: dict[str, str], req: HttpRequest) -> Any:
    """VALIDATION_FAILED listing each field of the request that breaks the route's schema; else the body as
    parsed for the check (``UNPARSED`` when none was), for the envelope to reuse."""
    headers = req.headers
    found, parsed = contract.check_request_parsed(
        params,
        lambda name: req.query.get(name, []),
        req.body,
        headers.get("content-type", ""),
        headers.get("content-encoding", ""),
    )
    if found:
        raise ValidationFailed(VALIDATION_MESSAGE, fields=tuple(found))
    return parsed


def check_answer(contract: RouteContract, plugin: LoadedPlugin, response: HttpResponse, rid: str) -> None:
    """Development: an answer that breaks its declared schema is logged and counted; it still goes out."""
    found = contract.check_response(response.status, response.body)
    if found:
        RESPONSE_MISMATCHES.labels(plugin.name).inc()
        route = contract.route
        logger.warning(
            "plugin answer does not match its schema: %s %s -> %d: %s",
            route.method,
            route.path.raw,
            response.status,
            "; ".join(f"{f.pointer} {f.reason}" for f in found),
            extra={"plugin": plugin.name, "plugin_version": plugin.manifest.version, "request_id": rid},
        )


class RequestCore:
    """Routes and runs plugin calls over the registry's current snapshot."""

    def __init__(
        self,
        registry: Registry,
        authenticate: Authenticate,
        limiter: Limiter | None = None,
        per_address: Rate | None = None,
        max_in_flight: int = 1024,
        validate_responses: bool = False,
    ) -> None:
        """``validate_responses``: check plugin answers against their declared schemas (log and count)."""
        self._registry = registry
        self.validate_responses = validate_responses
        self._authenticate = authenticate
        self.limiter: Limiter = limiter if limiter is not None else MemoryLimiter(100_000)
        self._per_address = per_address
        self.in_flight = InFlightLimit(max_in_flight)
        # The kernel's tracing (set when it starts); None: tracing is off and no span is made.
        self.tracing: Tracing | None = None

    async def limit_address(self, client: str) -> None:
        """The global per-address limit (``server.per_address_limit``), before any routing; RATE_LIMITED past it."""
        if self._per_address is not None:
            key = "address:" + _address_key(client)
            (await self.limiter.hit(key, self._per_address)).check("this client address", "address")

    async def _limit_call(
        self, spec: str | None, where: str, principal: Principal | None, client: str, scope: str
    ) -> Decision | None:
        """The manifest's ``rate_limit`` on a route or method: per principal, or per address when anonymous."""
        if spec is None:
            return None
        rate = _parse_rate(spec)
        assert rate is not None  # the manifest refuses "0"
        who = f"sub:{principal.sub}" if principal is not None else "address:" + _address_key(client)
        decision = await self.limiter.hit(f"{where}|{who}", rate)
        decision.check(where, scope)
        return decision

    def route_http(self, method: str, path: str) -> Match[RouteTarget] | None:
        """The plugin route for (method, path); None when no plugin serves the path; 405 with the allowed methods."""
        found = self._registry.snapshot.routes.match(method, path)
        if isinstance(found, frozenset):
            allowed = ", ".join(sorted(found))
            raise MethodNotAllowed(f"{method} is not allowed on {path}; allowed: {allowed}", found)
        return found

    def rpc_target(self, wire_method: str) -> RpcTarget | None:
        """The plugin method for a gRPC path ("/pkg.Service/Method"), or None."""
        return self._registry.snapshot.rpc.get(wire_method)

    def authenticate(self, authorization: str) -> Principal | None:
        return self._authenticate(authorization)

    @counted_in_flight
    async def call_http(self, match: Match[RouteTarget], req: HttpRequest) -> HttpResponse:
        plugin, route = match.target.plugin, match.target.route
        scope = logs.enter(logs.RequestScope(req.request_id, req.traceparent, plugin.name, plugin.manifest.version))
        context: CallContext | None = None
        error: BaseException | None = None
        try:
            principal = self._admit(route.public, route.roles, req.authorization)
            where = f"{plugin.name} {route.method} {route.path.raw}"
            limited = await self._limit_call(route.rate_limit, where, principal, req.client, "route")
            contract = plugin.contract.route(route)
            body_value: Any = UNPARSED
            if contract is not None and contract.checks_request:  # before an instance is borrowed
                body_value = check_request(contract, match.params, req)
            context = self._context(plugin, route.handler, req.request_id, req.traceparent, principal)
            if route.abi == "raw":
                context.call_config = http_call_config(
                    req, route.path.raw, match.params, context.principal, context.traceparent
                )
                output = await plugin.pool.call(route.handler, req.body, context)
                response = HttpResponse(200, output, {"content-type": route.content_type})
            else:
                envelope = http_envelope(
                    req, route.path.raw, match.params, context.principal, context.traceparent, body_value
                )
                response = parse_http_output(plugin.name, await plugin.pool.call(route.handler, envelope, context))
            if contract is not None and self.validate_responses:
                check_answer(contract, plugin, response, req.request_id)
            if limited is not None:  # the limit's numbers on every answer of a limited route, not only its 429s
                response.headers.update(limited.headers())
            return response
        except ArcanaError as exc:
            error = exc
            _log_refused(exc, plugin, req.request_id)
            raise
        except Exception as exc:  # the one catch-all for plugin calls
            error = exc
            raise unexpected(exc, req.request_id, plugin=plugin.name) from exc
        finally:
            _finish(scope, context, error)

    @counted_in_flight
    async def call_grpc(
        self,
        target: RpcTarget,
        data: bytes,
        metadata: dict[str, str],
        rid: str,
        authorization: str,
        client: str = "",
        traceparent: str | None = None,
    ) -> bytes:
        """Wire bytes in, wire bytes out: the plugin sees only proto3 JSON envelopes.

        ``traceparent``: the context the call continues (the edge's span's); the metadata's when not given.
        """
        plugin, entry = target.plugin, target.entry
        parent = metadata.get("traceparent", "") if traceparent is None else traceparent
        scope = logs.enter(logs.RequestScope(rid, parent, plugin.name, plugin.manifest.version))
        context: CallContext | None = None
        error: BaseException | None = None
        try:
            principal = self._admit(entry.public, entry.roles, authorization)
            await self._limit_call(entry.rate_limit, f"{plugin.name} {entry.method}", principal, client, "method")
            context = self._context(plugin, entry.handler, rid, parent, principal)
            if entry.abi == "raw":
                check_message(target.method, data)
                context.call_config = grpc_call_config(
                    target.method.full_name, metadata, rid, context.traceparent, context.principal
                )
                return await plugin.pool.call(entry.handler, data, context)
            message = decode_message(target.method, data)
            envelope = grpc_envelope(
                target.method.full_name, message, metadata, rid, context.traceparent, context.principal
            )
            reply = parse_grpc_output(plugin.name, await plugin.pool.call(entry.handler, envelope, context))
            try:
                return target.method.encode(reply)
            except DescriptorError as exc:
                raise PluginFailed(f"plugin '{plugin.name}' returned a malformed response", detail=str(exc)) from exc
        except ArcanaError as exc:
            error = exc
            _log_refused(exc, plugin, rid)
            raise
        except Exception as exc:  # the one catch-all for plugin calls
            error = exc
            raise unexpected(exc, rid, plugin=plugin.name) from exc
        finally:
            _finish(scope, context, error)

    def _admit(self, public: bool, roles: tuple[str, ...], authorization: str) -> Principal | None:
        """Authenticate, then RBAC from the manifest, before the plugin runs."""
        principal = self._authenticate(authorization)
        if not public:
            require_role(principal, roles)
        return principal

    def _context(
        self, plugin: LoadedPlugin, handler: str, rid: str, traceparent: str, principal: Principal | None
    ) -> CallContext:
        """The call's context, its span started when tracing is on; from here on the call's log lines name it."""
        deadline = time.monotonic() + plugin.limits.timeout_ms / 1000
        who = principal.as_json() if principal is not None else None
        context = CallContext(plugin.name, plugin.manifest.version, rid, who, deadline, traceparent)
        if self.tracing is not None:
            self.tracing.start_call(context, handler)
        logs.SCOPE.set(context)
        return context


def _finish(scope: Token[logs.LogScope | None], context: CallContext | None, error: BaseException | None) -> None:
    """A call is over: its log scope ends, and its span with the error it ended on."""
    logs.leave(scope)
    if context is not None and context.trace is not None:
        context.trace.end(error)


def _log_refused(exc: ArcanaError, plugin: LoadedPlugin, rid: str) -> None:
    """A refused plugin output is the operator's business: its detail goes to the log, never the client."""
    if exc.detail:
        extra = {"plugin": plugin.name, "plugin_version": plugin.manifest.version, "request_id": rid}
        logger.warning("plugin output refused: %s", exc.detail, extra=extra)
