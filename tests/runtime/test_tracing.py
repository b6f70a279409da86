"""Tracing in process: spans of REST and gRPC requests, plugin calls and host calls, on an in-memory exporter.

The kernel gets a ``Tracing`` over the test's own provider (never OTel's global
one), so each test sees exactly its spans. Plugins run on the fake engine; the
trace from an HTTP request through a job on a real plugin is
tests/runtime/test_trace_continuity.py.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from arcana.config import TracingConfig, load_config
from arcana.descriptors import DescriptorSet
from arcana.edge.grpc import start_grpc_server
from arcana.errors import ConfigError
from arcana.extras import MissingExtra
from arcana.preflight import check_before_binding
from arcana.tracing import OTLP_MODULE, Tracing, build_tracing, parent_of, traceparent_of
from arcana.types import CallContext
from fakes import FakePlugin, Kernels, bearer, greeter_descriptors, host, manifest_toml, trap, write_plugin
from runtime.rest_calls import rest, serve_app

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"
SAY = DescriptorSet.parse(greeter_descriptors()).method("fake.v1.Greeter/Say")


@pytest.fixture
def recorded() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing.on(provider), exporter
    provider.shutdown()


def named(spans: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    found = {span.name: span for span in spans}
    assert len(found) == len(spans), [s.name for s in spans]
    return found


def parent_id(span: ReadableSpan) -> int:
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def logs_and_echoes_traceparent(envelope: Any, _context: CallContext) -> Any:
    host("log", {"level": "info", "message": "handled"})
    return {"body": {"traceparent": envelope["traceparent"]}}


# ---------------------------------------------------------------- REST


def test_a_rest_request_continues_the_callers_trace_through_its_plugin_call_and_host_calls(
    kernels: Kernels, recorded: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = recorded
    serve_app(kernels, logs_and_echoes_traceparent)
    headers = {**bearer("u-1", ["user"]), "traceparent": TRACEPARENT, "x-request-id": "rid-t1"}
    response = rest(kernels(tracing), "POST", "/api/things/7", json={}, headers=headers)
    assert response.status_code == 200

    spans = named(exporter.get_finished_spans())
    server, call, log = spans["POST /api/things/{id}"], spans["plugin.call app h"], spans["host log"]
    assert server.kind == SpanKind.SERVER
    assert {trace_id(s) for s in (server, call, log)} == {int(TRACE, 16)}
    assert parent_id(server) == int(PARENT, 16)
    assert parent_id(call) == span_id(server) and parent_id(log) == span_id(call)
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/api/things/{id}",
        "http.response.status_code": 200,
        "arcana.plugin": "app",
        "arcana.request_id": "rid-t1",
    }
    assert (log.attributes or {})["arcana.capability"] == "log"
    assert (log.attributes or {})["arcana.outcome"] == "ok"
    # The plugin's envelope names its own call's span: whatever it starts continues the trace there.
    assert response.json()["traceparent"] == f"00-{TRACE}-{span_id(call):016x}-01"


def test_a_rest_request_without_a_valid_traceparent_starts_a_new_trace(
    kernels: Kernels, recorded: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = recorded
    serve_app(kernels, logs_and_echoes_traceparent)
    kernel = kernels(tracing)
    for given in ({}, {"traceparent": "tp-1"}):
        exporter.clear()
        response = rest(kernel, "POST", "/api/things/7", json={}, headers={**bearer("u-1", ["user"]), **given})
        server = named(exporter.get_finished_spans())["POST /api/things/{id}"]
        assert server.parent is None and trace_id(server) != int(TRACE, 16)
        assert response.json()["traceparent"].split("-")[1] == f"{trace_id(server):032x}"


def test_a_failed_plugin_call_marks_its_span_and_the_request_span_has_the_status_answered(
    kernels: Kernels, recorded: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = recorded
    serve_app(kernels, trap())
    response = rest(kernels(tracing), "POST", "/api/things/7", json={}, headers=bearer("u-1", ["user"]))
    spans = named(exporter.get_finished_spans())
    server, call = spans["POST /api/things/{id}"], spans["plugin.call app h"]
    assert (server.attributes or {})["http.response.status_code"] == response.status_code >= 500
    assert server.status.status_code == StatusCode.ERROR
    assert call.status.status_code == StatusCode.ERROR
    assert (call.attributes or {})["arcana.error_code"] == response.json()["code"]


def test_a_refused_caller_gets_a_request_span_but_no_plugin_call(
    kernels: Kernels, recorded: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = recorded
    serve_app(kernels, logs_and_echoes_traceparent)
    response = rest(kernels(tracing), "POST", "/api/things/7", json={})
    assert response.status_code == 401
    spans = named(exporter.get_finished_spans())
    assert list(spans) == ["POST /api/things/{id}"]
    server = spans["POST /api/things/{id}"]
    assert (server.attributes or {})["http.response.status_code"] == 401
    assert server.status.status_code == StatusCode.UNSET  # the caller's error, not the server's


def test_with_tracing_off_the_callers_traceparent_reaches_the_plugin_unchanged(kernels: Kernels) -> None:
    serve_app(kernels, logs_and_echoes_traceparent)
    kernel = kernels()
    assert kernel.tracing is None and kernel.core.tracing is None
    headers = {**bearer("u-1", ["user"]), "traceparent": TRACEPARENT}
    assert rest(kernel, "POST", "/api/things/7", json={}, headers=headers).json() == {"traceparent": TRACEPARENT}


# ---------------------------------------------------------------- gRPC


def test_a_grpc_call_continues_the_metadata_traceparent_through_its_plugin_call_and_host_calls(
    kernels: Kernels, recorded: tuple[Tracing, InMemorySpanExporter]
) -> None:
    tracing, exporter = recorded
    seen: list[str] = []

    def say(envelope: Any, _context: CallContext) -> Any:
        host("log", {"level": "info", "message": "said"})
        seen.append(envelope["traceparent"])
        return {"message": {"count": 1}}

    kernels.engine.define("greeter", FakePlugin({"say": say}, imports=("log",)))
    entries = [{"method": "fake.v1.Greeter/Say", "handler": "say", "public": True}]
    path = write_plugin(kernels.plugins, manifest_toml("greeter", grpc=entries, capabilities={"log": True}))
    path.with_suffix(".pb").write_bytes(greeter_descriptors())
    port = free_port()
    kernel = kernels(tracing, SERVER__HOST="127.0.0.1", SERVER__GRPC_PORT=str(port))

    async def main() -> grpc.StatusCode:
        server = await start_grpc_server(kernel)
        try:
            await kernel.load_all()
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                rpc = channel.unary_unary("/fake.v1.Greeter/Say")(
                    SAY.input_type(name="x").SerializeToString(),
                    metadata=(("traceparent", TRACEPARENT), ("x-request-id", "rid-g")),
                    timeout=10,
                )
                await rpc
                return await rpc.code()
        finally:
            await server.stop(None)

    assert asyncio.run(main()) == grpc.StatusCode.OK
    spans = named(exporter.get_finished_spans())
    server, call, log = spans["fake.v1.Greeter/Say"], spans["plugin.call greeter say"], spans["host log"]
    assert server.kind == SpanKind.SERVER and parent_id(server) == int(PARENT, 16)
    assert {trace_id(s) for s in (server, call, log)} == {int(TRACE, 16)}
    assert parent_id(call) == span_id(server) and parent_id(log) == span_id(call)
    assert dict(server.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": "fake.v1.Greeter",
        "rpc.method": "Say",
        "rpc.grpc.status_code": 0,
        "arcana.plugin": "greeter",
        "arcana.request_id": "rid-g",
    }
    assert seen == [f"00-{TRACE}-{span_id(call):016x}-01"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- configuration and the provider


@pytest.mark.parametrize(
    ("key", "value", "complaint"),
    [
        ("EXPORTER", "jaeger", "tracing.exporter"),
        ("SAMPLE_RATIO", "1.5", "tracing.sample_ratio"),
        ("SAMPLE_RATIO", "-0.1", "tracing.sample_ratio"),
        ("MAX_QUEUE_SIZE", "0", "tracing.max_queue_size"),
        ("MAX_EXPORT_BATCH_SIZE", "4096", "tracing.max_export_batch_size"),
        ("SERVICE_NAME", '""', "tracing.service_name"),
    ],
)
def test_bad_tracing_settings_stop_start_up_naming_the_key(key: str, value: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint.replace(".", r"\.")):
        load_config(None, environ={f"ARCANA_TRACING__{key}": value})


def test_exporter_none_builds_nothing_and_otlp_and_console_build_a_provider() -> None:
    assert build_tracing(TracingConfig()) is None
    for exporter in ("otlp", "console"):
        config = load_config(None, environ={"ARCANA_TRACING__EXPORTER": exporter}).tracing
        tracing = build_tracing(config)
        assert tracing is not None
        tracing.shutdown()  # nothing was recorded: nothing is sent


def test_the_otlp_exporter_without_its_extra_is_refused_before_binding_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == OTLP_MODULE else find_spec(name))
    config = load_config(None, environ={"ARCANA_TRACING__EXPORTER": "otlp", "ARCANA_PLUGINS__DIR": str(tmp_path)})
    with pytest.raises(MissingExtra) as refused:
        build_tracing(config.tracing)
    assert refused.value.extra == "otlp"
    with pytest.raises(MissingExtra):
        check_before_binding(config)


class StuckExporter(SpanExporter):
    """Holds its exports until released, so spans pile up behind it; counts what it was given."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0
        self.gave_up = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.release.wait(60):
            self.gave_up = True
        self.exported += len(spans)
        return SpanExportResult.SUCCESS


def test_spans_waiting_for_a_stuck_exporter_are_bounded_by_the_queue_and_the_rest_dropped() -> None:
    exporter = StuckExporter()
    config = TracingConfig(exporter="otlp", max_queue_size=8, max_export_batch_size=4)
    tracing = build_tracing(config, exporter)
    assert tracing is not None
    for n in range(1000):
        tracing.tracer.start_span(f"s{n}").end()
    exporter.release.set()
    tracing.shutdown()  # flushes what the queue held
    # At most one batch was in the stuck export and a full queue behind it; the other spans were dropped.
    assert 0 < exporter.exported <= config.max_queue_size + config.max_export_batch_size


def test_the_sample_ratio_drops_new_traces_but_follows_a_sampled_caller() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(TracingConfig(exporter="console", sample_ratio=0.0), exporter)
    assert tracing is not None
    fresh = tracing.span("fresh", "", SpanKind.SERVER, {})
    continued = tracing.span("continued", TRACEPARENT, SpanKind.SERVER, {})
    fresh.end()
    continued.end()
    assert int(traceparent_of(fresh)[-2:], 16) & 1 == 0  # not sampled, still a valid context to pass on
    tracing.shutdown()
    assert [s.name for s in exporter.get_finished_spans()] == ["continued"]


def test_an_unsampled_caller_is_followed_without_recording_and_its_trace_goes_on() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(TracingConfig(exporter="console", sample_ratio=1.0), exporter)
    assert tracing is not None
    unsampled = TRACEPARENT[:-2] + "00"
    span = tracing.span("request", unsampled, SpanKind.SERVER, {})
    passed_on = traceparent_of(span)
    assert passed_on.split("-")[1] == unsampled.split("-")[1]  # the same trace
    assert passed_on.split("-")[2] != unsampled.split("-")[2]  # a span of its own
    assert passed_on.endswith("-00")
    context = CallContext("p", "1.0.0", "rid", None, 0.0, passed_on)
    call = tracing.start_call(context, "handler")
    host = call.host_call("kv_get", "store")
    call.host_done(host, "ok")
    call.end()
    span.end()
    tracing.shutdown()
    assert exporter.get_finished_spans() == ()


def test_the_sample_ratio_keeps_about_its_share_of_new_traces() -> None:
    exporter = InMemorySpanExporter()
    tracing = build_tracing(TracingConfig(exporter="console", sample_ratio=0.25), exporter)
    assert tracing is not None
    spans = [tracing.span("fresh", "", SpanKind.SERVER, {}) for _ in range(4000)]
    for span in spans:
        span.end()
    tracing.shutdown()
    kept = exporter.get_finished_spans()
    assert 700 < len(kept) < 1300  # 1000 expected; a binomial spread of about 27
    assert all(s.context.trace_flags.sampled for s in kept)
    assert all(not s.is_recording() for s in spans if not s.get_span_context().trace_flags.sampled)


def test_tracing_never_touches_opentelemetrys_global_provider_or_current_span(
    recorded: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, _exporter = recorded
    built = build_tracing(TracingConfig(exporter="console"), InMemorySpanExporter())
    assert built is not None
    try:
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # nobody set one
        someone_elses = tracing.tracer.start_span("someone else's")
        with trace.use_span(someone_elses, end_on_exit=True):
            fresh = built.span("fresh", "", SpanKind.SERVER, {})
        fresh.end()
        assert not fresh.parent and fresh.get_span_context().trace_id != someone_elses.get_span_context().trace_id
    finally:
        built.shutdown()


def test_stopping_with_an_unreachable_collector_waits_no_longer_than_the_export_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = StuckExporter()
    tracing = build_tracing(TracingConfig(exporter="otlp", export_timeout_ms=50), exporter)
    assert tracing is not None
    tracing.tracer.start_span("queued").end()
    with caplog.at_level(logging.WARNING, "arcana.tracing"):
        tracing.shutdown()  # returns while the export is still stuck (the SDK alone would wait it out)
    assert exporter.exported == 0 and not exporter.gave_up
    assert "tracing.export_timeout_ms" in caplog.text
    exporter.release.set()


@pytest.mark.parametrize(
    "traceparent",
    [
        TRACEPARENT,
        f"00-{TRACE}-{PARENT}-00",
        f"00-{'0' * 32}-{PARENT}-01",
        f"00-{TRACE}-{'0' * 16}-01",
        f"00-{TRACE.upper()}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-0g",
        f"00-+{TRACE[1:]}-{PARENT}-01",
        f"00-{TRACE[:4]}_{TRACE[5:]}-{PARENT}-01",
        f"01-{TRACE}-{PARENT}-01-more",
        f"ff-{TRACE}-{PARENT}-01",
        f"00-{TRACE}-{PARENT}-01-more",
        "tp-1",
        "",
    ],
)
def test_a_traceparent_is_read_exactly_as_the_w3c_propagator_reads_it(traceparent: str) -> None:
    ours = trace.get_current_span(parent_of(traceparent)).get_span_context()
    carrier = {"traceparent": traceparent} if traceparent else {}
    theirs = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier, Context())).get_span_context()
    assert ours == theirs


def test_with_tracing_off_the_server_never_imports_the_sdk() -> None:
    """Off means no provider, no processor thread, no SDK module: only the small API is imported."""
    check = (
        "import sys, arcana.server\n"
        "from arcana.config import TracingConfig\n"
        "from arcana.tracing import build_tracing\n"
        "assert build_tracing(TracingConfig()) is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
