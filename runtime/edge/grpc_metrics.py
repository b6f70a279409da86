"""gRPC call metrics, recorded once per call by a server interceptor in front of every handler.

::

    arcana_grpc_requests_total{method,code,plugin}            calls answered, by status code name
    arcana_grpc_request_duration_seconds{method,plugin}       time until the handler returned

``method`` is the wire path (``/pkg.Service/Method``) of a method the server
serves (a plugin's, the kernel's, health, reflection); any other path is
``<unknown>`` (answered UNIMPLEMENTED), so a client inventing method names
adds no series. ``plugin`` is the plugin serving the method, empty for the
kernel's own services. Unary calls are measured; streaming ones (health
``Watch``, reflection) pass through uncounted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import Counter, Histogram

UNKNOWN = "<unknown>"
KERNEL = ""  # the plugin label of the kernel's own services
REQUESTS = Counter(
    "arcana_grpc_requests_total", "gRPC calls answered, by method and status code", ["method", "code", "plugin"]
)
DURATION = Histogram(
    "arcana_grpc_request_duration_seconds",
    "gRPC call time until the handler returned, by method",
    ["method", "plugin"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
if TYPE_CHECKING:  # grpc's classes are generic only in its type stubs
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]]


def status_name(code: object) -> str:
    """A status as its name ("NOT_FOUND"); grpc.aio reports an enum member, an int, or None (OK)."""
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    for status in grpc.StatusCode:
        if status.value[0] == code:
            return status.name
    return "UNKNOWN"


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts and times every unary call; ``plugin_of`` names the plugin serving a method ("" for the kernel)."""

    def __init__(self, plugin_of: Callable[[str], str], clock: Callable[[], float] = time.perf_counter) -> None:
        self._plugin_of = plugin_of
        self._clock = clock
        self._handlers: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            REQUESTS.labels(UNKNOWN, grpc.StatusCode.UNIMPLEMENTED.name, KERNEL).inc()
            return None
        if handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        # The measured handler is kept per method while the method's own handler stays the same
        # object (until a reload replaces it): making one per call cost about 4 us. Only methods
        # the server serves get here, so the table grows no larger than the route table.
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler.unary_unary:
            return cached[1]
        measured = grpc.unary_unary_rpc_method_handler(
            self._measured(handler.unary_unary, method, self._plugin_of(method)),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._handlers[method] = (handler.unary_unary, measured)
        return measured

    def _measured(self, behavior: Any, method: str, plugin: str) -> Any:
        duration = DURATION.labels(method, plugin)
        clock = self._clock

        async def measured(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, failed = clock(), "OK"
            try:
                return await behavior(request, context)
            except asyncio.CancelledError:
                failed = "CANCELLED"
                raise
            except BaseException:
                # abort() set the code before raising; anything else reaches the client as UNKNOWN,
                # a cancelled call (the client went away or its deadline passed) as CANCELLED.
                failed = "UNKNOWN"
                raise
            finally:
                duration.observe(clock() - started)
                code = context.code()
                REQUESTS.labels(method, failed if code is None else status_name(code), plugin).inc()

        return measured
