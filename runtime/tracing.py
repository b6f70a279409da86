"""OpenTelemetry tracing: one tracer provider per kernel, and the few spans the kernel makes.

Spans, each a child of the one before it:

- a request: ``"GET /api/notes/{id}"`` (REST, kind SERVER) or ``"pkg.Service/Method"`` (gRPC),
  continuing the caller's W3C ``traceparent`` header or metadata when there is one;
- a job: ``"job <type>"`` (kind CONSUMER), continuing the traceparent stored with the job, which
  is the one of the plugin call that enqueued it: a trace runs from the HTTP request into its jobs;
- a plugin call: ``"plugin.call <plugin> <handler>"``; its traceparent is the one the plugin's
  envelope and its host calls carry, so whatever the plugin starts continues the trace;
- a host call: ``"host <function>"`` with its capability and outcome.

The kernel passes a ``Tracing`` (or None) explicitly, and a plugin call's span rides on its
``CallContext`` into the plugin's thread: neither OTel's global provider nor the current-span
context variable is used, so several kernels (and tests with in-memory exporters) live side by
side, and no context has to cross a thread by itself. With ``tracing.exporter: none`` there is no
``Tracing`` at all: callers test for None and make no span, and a traceparent passes through as is.

Spans are exported in batches from a bounded queue (``tracing.max_queue_size``): past it the SDK
drops spans rather than keep them, so a slow or absent collector cannot grow the process.
"""

from __future__ import annotations

import logging
import random
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from arcana.config import TracingConfig
from arcana.extras import require_module
from arcana.types import CallContext

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from arcana.registry import RouteTarget, RpcTarget

logger = logging.getLogger("arcana.tracing")
Attributes = Mapping[str, str | int | bool]
_PROPAGATOR = TraceContextTextMapPropagator()
# A version-00 traceparent in lower-case hex, nothing after it; any other form goes to the propagator.
_OWN_FORM = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http"
_ID_SPACE = 2**64
_LOW_64 = _ID_SPACE - 1
_ZERO_ID = "0" * 32


def span_context_of(traceparent: str) -> SpanContext | None:
    """The span a W3C traceparent names; None when there is none or it is malformed (a new trace then)."""
    if not traceparent:
        return None
    if _OWN_FORM.fullmatch(traceparent):  # the one form the kernel writes: parsed here, in half the propagator's time
        trace_id, span_id = int(traceparent[3:35], 16), int(traceparent[36:52], 16)
        if not (trace_id and span_id):
            return None
        return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(traceparent[53:], 16)))
    extracted = get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}, Context())).get_span_context()
    return extracted if extracted.is_valid else None


def parent_of(traceparent: str) -> Context:
    """The context a W3C traceparent names; an empty one (a new trace) when there is none or it is malformed.

    Never OTel's current context: a span's parent is only ever what the caller passed in.
    """
    parent = span_context_of(traceparent)
    return Context() if parent is None else set_span_in_context(NonRecordingSpan(parent), Context())


class Unsampled(NonRecordingSpan):
    """A span of a trace that is not sampled: nothing is recorded, only its traceparent is passed on.

    Most requests are not sampled in production, so this is their whole cost: the header string,
    made by slicing and one random span id, with no ids parsed and no OpenTelemetry objects; the
    ``SpanContext`` is only made if someone asks for it.
    """

    def __init__(self, traceparent: str) -> None:
        self.traceparent = traceparent

    def get_span_context(self) -> SpanContext:
        parent = span_context_of(self.traceparent)
        assert parent is not None  # made only from a valid header
        return SpanContext(parent.trace_id, parent.span_id, False, parent.trace_flags)


def traceparent_of(span: Span) -> str:
    """The W3C traceparent header naming ``span``: what a plugin, a job or a downstream service continues."""
    if isinstance(span, Unsampled):
        return span.traceparent
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def end_with_error(span: Span, error: BaseException | None) -> None:
    """End ``span``, marked as failed by ``error`` when there is one."""
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        code = getattr(error, "code", None)
        if code is not None:
            span.set_attribute("arcana.error_code", str(getattr(code, "value", code)))
    span.end()


class CallTrace:
    """One plugin call's span, carried on its ``CallContext`` so host calls (on the plugin's thread) nest under it."""

    __slots__ = ("_parent", "_tracer", "span")

    def __init__(self, tracer: Tracer, span: Span) -> None:
        self._tracer = tracer
        self.span = span
        self._parent = set_span_in_context(span) if span.is_recording() else None

    def host_call(self, function: str, capability: str) -> Span:
        """A child span for one host call; the caller sets its outcome and ends it."""
        if self._parent is None:  # the call is not sampled: its host calls are not either, and cost nothing
            return self.span
        attributes = {"arcana.host.function": function, "arcana.capability": capability}
        return self._tracer.start_span(f"host {function}", self._parent, attributes=attributes)

    def host_done(self, span: Span, outcome: str) -> None:
        """End a host call's span with its outcome ("ok", an error code, or "internal": a kernel fault)."""
        span.set_attribute("arcana.outcome", outcome)
        if outcome == "internal":
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def end(self, error: BaseException | None = None) -> None:
        end_with_error(self.span, error)


class Tracing:
    """A kernel's tracer. ``provider`` is owned (shut down by ``shutdown``) only when this object built it.

    The head-sampling decision is made here, before the SDK is asked: a span whose parent was not
    sampled, or a new trace that ``sample_ratio`` leaves out, is a bare ``NonRecordingSpan`` with
    fresh ids (about 1 us), where the SDK's own path costs several times that for the same no-op
    span. Sampled spans go through the SDK. The rule is the SDK's ``ParentBased(TraceIdRatioBased)``:
    a parent's sampled flag decides; a new trace is kept when the low 64 bits of its id fall under
    ``sample_ratio * 2**64``.
    """

    def __init__(
        self,
        tracer: Tracer,
        provider: TracerProvider | None = None,
        flush_timeout_s: float = 10.0,
        sample_ratio: float = 1.0,
    ) -> None:
        self.tracer = tracer
        self._provider = provider
        self._flush_timeout_s = flush_timeout_s
        self._bound = round(sample_ratio * _ID_SPACE)

    @classmethod
    def on(cls, provider: TracerProvider) -> Tracing:
        """Spans through a provider the caller owns and shuts down (tests: an in-memory exporter)."""
        return cls(provider.get_tracer("arcana"))

    def span(self, name: str, traceparent: str, kind: SpanKind, attributes: Attributes) -> Span:
        """A span continuing ``traceparent`` (a new trace without a valid one); the caller ends it."""
        if _OWN_FORM.fullmatch(traceparent) and not int(traceparent[53:], 16) & 1 and traceparent[3:35] != _ZERO_ID:
            # An unsampled parent in the kernel's own form (every span after the first of a request).
            return Unsampled(f"{traceparent[:36]}{random.getrandbits(64) or 1:016x}{traceparent[52:]}")
        parent = span_context_of(traceparent)
        if parent is None:
            trace_id = random.getrandbits(128) or 1
            if trace_id & _LOW_64 >= self._bound:
                return Unsampled(f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-00")
            return self.tracer.start_span(name, Context(), kind, attributes)
        if not parent.trace_flags.sampled:
            span_id = random.getrandbits(64) or 1
            return Unsampled(f"00-{parent.trace_id:032x}-{span_id:016x}-{int(parent.trace_flags):02x}")
        return self.tracer.start_span(name, set_span_in_context(NonRecordingSpan(parent), Context()), kind, attributes)

    def start_call(self, context: CallContext, handler: str) -> CallTrace:
        """Start the plugin-call span under ``context.traceparent`` and make it the call's traceparent."""
        attributes = {
            "arcana.plugin": context.plugin,
            "arcana.plugin_version": context.version,
            "arcana.handler": handler,
        }
        name = f"plugin.call {context.plugin} {handler}"
        span = self.span(name, context.traceparent, SpanKind.INTERNAL, attributes)
        trace = CallTrace(self.tracer, span)
        context.trace = trace
        context.traceparent = traceparent_of(span)
        return trace

    def shutdown(self) -> None:
        """Export what is queued and stop (only a provider this object built), waiting at most the flush timeout.

        The SDK's own shutdown waits up to 30 s per processor and retries each batch until the export
        timeout, so an unreachable collector would hold up the server's stop for long; past
        ``tracing.export_timeout_ms`` the rest is left to a daemon thread that ends with the process.
        """
        provider, self._provider = self._provider, None
        if provider is None:
            return
        flush = threading.Thread(target=provider.shutdown, name="arcana-trace-flush", daemon=True)
        flush.start()
        flush.join(self._flush_timeout_s)
        if flush.is_alive():
            logger.warning(
                "spans not exported within %g s (tracing.export_timeout_ms); the rest are dropped",
                self._flush_timeout_s,
            )


def http_server_span(tracing: Tracing, method: str, target: RouteTarget, rid: str, traceparent: str) -> Span:
    """A REST request's span, named by its route template (never the raw path: names must stay few)."""
    route = target.route.path.raw
    attributes = {
        "http.request.method": method,
        "http.route": route,
        "arcana.plugin": target.plugin.name,
        "arcana.request_id": rid,
    }
    return tracing.span(f"{method} {route}", traceparent, SpanKind.SERVER, attributes)


def rpc_server_span(tracing: Tracing, target: RpcTarget, rid: str, traceparent: str) -> Span:
    """A gRPC call's span, named "package.Service/Method" as OpenTelemetry's RPC conventions have it."""
    full = target.method.full_name
    service, _, method = full.partition("/")
    attributes = {
        "rpc.system": "grpc",
        "rpc.service": service,
        "rpc.method": method,
        "arcana.plugin": target.plugin.name,
        "arcana.request_id": rid,
    }
    return tracing.span(full, traceparent, SpanKind.SERVER, attributes)


def end_server_span(span: Span, status_key: str, status: int, failed: bool) -> None:
    """End a request's span with its transport's status; a server-side failure marks it as an error."""
    span.set_attribute(status_key, status)
    if failed:
        span.set_status(Status(StatusCode.ERROR))
    span.end()


def build_exporter(config: TracingConfig) -> SpanExporter:
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=config.service_name)
    require_module(OTLP_MODULE, "the OTLP trace exporter (tracing.exporter: otlp)", "otlp")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.otlp_endpoint or None, timeout=config.export_timeout_ms / 1000)


def build_tracing(config: TracingConfig, exporter: SpanExporter | None = None) -> Tracing | None:
    """The kernel's tracing from ``tracing:``; None for exporter "none" (the SDK is then never imported).

    ``exporter`` replaces the configured one (tests). Raises MissingExtra when the exporter's package
    is not installed.
    """
    if config.exporter == "none":
        return None
    exporter = exporter or build_exporter(config)
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    provider = TracerProvider(
        # New traces reach the SDK only once Tracing has sampled them (sample_ratio): it records them all.
        sampler=ParentBased(ALWAYS_ON),
        resource=Resource.create({"service.name": config.service_name}),
        # The kernel shuts it down when it stops; an atexit hook per provider would pile up in tests.
        shutdown_on_exit=False,
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            max_queue_size=config.max_queue_size,
            max_export_batch_size=config.max_export_batch_size,
            export_timeout_millis=config.export_timeout_ms,
        )
    )
    return Tracing(provider.get_tracer("arcana"), provider, config.export_timeout_ms / 1000, config.sample_ratio)
