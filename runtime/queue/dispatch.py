"""A claimed job as a plugin call: which handler runs it, the envelope it gets, what its answer means.

A job with a ``target`` (``"plugin/handler"``) is an event delivery to one
``[[subscribe]]`` handler and gets the ``event`` envelope; any other job is
routed by its type to the plugin whose ``[[job]]`` declares it and gets the
``job`` envelope. Routing reads the snapshot it is given, so the worker, by
passing the current one for each job, runs the next job of a hot-reloaded
plugin on its new version. The handler answers ``{}`` or, for a job,
``{"result": <json>}`` (kept as the job's result); ``{"error": {...}}`` and
anything malformed raise in the public error model, like an HTTP handler's.

With tracing on, a job is a span ("job <type>", kind CONSUMER) continuing the
traceparent stored with it (the enqueuing plugin call's), and its plugin call
a span under that: a trace runs from the HTTP request into its jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.trace import SpanKind

from arcana import jsonio, logs
from arcana.core import request_id
from arcana.envelopes import plugin_error
from arcana.errors import PluginFailed, ValidationFailed
from arcana.queue.types import Job
from arcana.registry import LoadedPlugin, Snapshot
from arcana.tracing import Tracing, end_with_error, traceparent_of
from arcana.types import CallContext

Kind = Literal["job", "event"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one job goes: a loaded plugin version and its exported handler."""

    plugin: LoadedPlugin
    handler: str
    kind: Kind


def kind_of(job: Job) -> Kind:
    return "event" if job.target else "job"


def route(snapshot: Snapshot, job: Job) -> Delivery | None:
    """The handler that serves ``job`` in ``snapshot``; None when no loaded plugin does (yet)."""
    if not job.target:
        found = snapshot.jobs.get(job.type)
        return None if found is None else Delivery(found.plugin, found.job.handler, "job")
    name, _, handler = job.target.partition("/")
    plugin = snapshot.plugins.get(name)
    # A version that no longer subscribes with this handler does not get the event (it may not export it).
    if plugin is None or not any(s.handler == handler for s in plugin.manifest.subscriptions):
        return None
    return Delivery(plugin, handler, "event")


def envelope(job: Job, kind: Kind, rid: str, traceparent: str | None = None) -> bytes:
    """The ``job`` or ``event`` envelope; an event job's payload is the event object itself.

    ``traceparent``: the call's own (its span's, with tracing on); the job's when not given.
    """
    data: dict[str, Any] = {"kind": kind}
    if kind == "event":
        data["event"] = job.payload
    else:
        data["job"] = {
            "id": job.id,
            "type": job.type,
            "payload": job.payload,
            "attempt": job.attempts,
            "priority": job.priority.label,
        }
    data |= {"request_id": rid, "traceparent": job.traceparent if traceparent is None else traceparent}
    try:
        return jsonio.encode(data)
    except jsonio.JsonRejected as exc:  # stored by a backend, not checked by JobQueue (an event's payload)
        raise ValidationFailed(f"the job's payload cannot be sent: {exc}") from None


def parse_output(plugin: str, kind: Kind, output: bytes, max_result_bytes: int) -> Any:
    """The job's result (None for ``{}`` and for events), or the handler's error raised."""
    try:
        data = jsonio.decode(output)
    except jsonio.JsonRejected as exc:
        raise _bad(plugin, f"output is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(plugin, "output must be a JSON object")
    if "error" in data:
        raise plugin_error(plugin, data["error"])
    allowed = {"result"} if kind == "job" else set()
    if set(data) - allowed:
        shape = '{} or {"result": ...}' if kind == "job" else "{}"
        raise _bad(plugin, f"unknown output fields {sorted(set(data) - allowed)}; a {kind} handler answers {shape}")
    result = data.get("result")
    size = len(jsonio.encode(result))
    if size > max_result_bytes:
        raise PluginFailed(
            f"plugin '{plugin}' returned a result of {size} bytes; the limit is {max_result_bytes} "
            "(queue.max_payload_bytes)"
        )
    return result


async def deliver(delivery: Delivery, job: Job, max_result_bytes: int, tracing: Tracing | None = None) -> Any:
    """Run the job's handler through its plugin's pool, within the plugin's time limit, as an HTTP call would."""
    plugin = delivery.plugin
    rid = request_id(f"{job.id}.{job.attempts}")
    deadline = time.monotonic() + plugin.limits.timeout_ms / 1000
    context = CallContext(plugin.name, plugin.manifest.version, rid, None, deadline, job.traceparent)
    if tracing is None:
        return await _call(delivery, job, context, max_result_bytes)
    attributes: dict[str, str | int | bool] = {
        "arcana.job.id": job.id,
        "arcana.job.type": job.type,
        "arcana.job.kind": delivery.kind,
        "arcana.job.attempt": job.attempts,
        "arcana.plugin": plugin.name,
        "arcana.request_id": rid,
    }
    span = tracing.span(f"job {job.type}", job.traceparent, SpanKind.CONSUMER, attributes)
    context.traceparent = traceparent_of(span)
    error: BaseException | None = None
    try:
        trace = tracing.start_call(context, delivery.handler)
        try:
            return await _call(delivery, job, context, max_result_bytes)
        except BaseException as exc:
            error = exc
            raise
        finally:
            trace.end(error)
    finally:
        end_with_error(span, error)


async def _call(delivery: Delivery, job: Job, context: CallContext, max_result_bytes: int) -> Any:
    scope = logs.enter(context)
    try:
        data = envelope(job, delivery.kind, context.request_id, context.traceparent)
        output = await delivery.plugin.pool.call(delivery.handler, data, context)
        return parse_output(delivery.plugin.name, delivery.kind, output, max_result_bytes)
    finally:
        logs.leave(scope)


def _bad(plugin: str, why: str) -> PluginFailed:
    return PluginFailed(f"plugin '{plugin}' returned a malformed response", detail=why)
