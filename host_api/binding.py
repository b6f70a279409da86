"""Turns a capability's declared host functions into what an engine links.

This is the one JSON boundary of the host API, shared by every engine: the
request bytes are parsed into a JSON object, the handler runs with the
capability's per-call state, and the reply (or the error, in the public
model) is serialized back. A linked function never raises: an exception
inside an Extism host function would be printed and dropped by the SDK, so
every failure becomes an error value and, when it is a kernel fault, a log
line with its trace. Every call is counted by outcome and timed, and, with
tracing on, is a span under its plugin call's (``CallContext.trace``). It
runs on the plugin's thread, so the call's log fields are set here from its
``CallContext`` (a context variable does not cross into that thread).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from prometheus_client import Counter, Histogram

from arcana import jsonio, logs
from arcana.errors import ArcanaError, ErrorCode
from arcana.types import CallContext, Capability, HostFunction, JsonObject, LinkedFunction, PluginSpec

logger = logging.getLogger("arcana.host")
_COMPACT = (",", ":")
# Labels are names the kernel or the manifest fixed, never a value a plugin picks per call.
HOST_CALLS = Counter(
    "arcana_host_calls_total", "Host-function calls by outcome.", ["plugin", "capability", "function", "outcome"]
)
HOST_CALL_SECONDS = Histogram(
    "arcana_host_call_seconds",
    "Time spent in host functions.",
    ["function"],
    buckets=(0.00005, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)


def error_reply(code: ErrorCode, message: str, retry_after: int | None = None) -> bytes:
    error: JsonObject = {"code": code.value, "message": message}
    if retry_after is not None:  # SERVICE_UNAVAILABLE from an open breaker: seconds until it lets a call through
        error["retry_after"] = retry_after
    return json.dumps({"error": error}, separators=_COMPACT).encode()


def link(capability: Capability, state: Any, fn: HostFunction) -> LinkedFunction:
    """``fn`` bound to one plugin's ``state`` of ``capability``, behind the JSON boundary."""
    key, handler = capability.name, fn.handler
    seconds = HOST_CALL_SECONDS.labels(fn.name)

    def call(context: CallContext, request: bytes) -> bytes:
        started, outcome = time.perf_counter(), "internal"
        scope = logs.enter(context)
        trace = context.trace
        span = None if trace is None else trace.host_call(fn.name, key)
        try:
            payload = _parse(fn.name, request)
            prepared = context.prepared.get(key, _MISSING)
            if prepared is _MISSING:
                prepared = context.prepared[key] = capability.prepare(state, context)
            reply = jsonio.encode(handler(capability, prepared, payload))
            outcome = "ok"
            return reply
        except ArcanaError as exc:
            outcome = exc.code.value.lower()
            return error_reply(exc.code, exc.message, exc.retry_after)
        except Exception:  # a raise would be printed and dropped by the engine: log it, answer INTERNAL
            logger.exception("host function %s failed", fn.name, extra={"plugin": context.plugin})
            return error_reply(ErrorCode.INTERNAL, f"{fn.name} failed inside the host")
        finally:
            logs.leave(scope)
            if trace is not None and span is not None:
                trace.host_done(span, outcome)
            HOST_CALLS.labels(context.plugin, key, fn.name, outcome).inc()
            seconds.observe(time.perf_counter() - started)

    return LinkedFunction(fn.name, call, fn.quick)


def _parse(name: str, request: bytes) -> JsonObject:
    try:
        # A plugin's request is as untrusted as a client's: the same strict parser and nesting bound.
        payload = jsonio.decode(request, max_depth=jsonio.MAX_DEPTH) if request else {}
    except jsonio.JsonRejected as exc:
        raise ArcanaError(f"{name} was given invalid JSON: {exc}", code=ErrorCode.VALIDATION_FAILED) from None
    if not isinstance(payload, dict):
        raise ArcanaError(f"{name} takes a JSON object", code=ErrorCode.VALIDATION_FAILED)
    return payload


_MISSING = object()


def link_capability(capability: Capability, plugin: PluginSpec) -> dict[str, LinkedFunction]:
    """Every function of ``capability`` that ``plugin`` was granted, configured and linked (tests, tools)."""
    state = capability.configure(plugin)
    return {fn.name: link(capability, state, fn) for fn in capability.functions if fn.grant in plugin.granted}
