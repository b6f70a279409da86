"""JSON log lines: a call's fields on every line written while serving it, credentials never written, quiet libraries.

Lines are captured with the process handler's own formatter and filter
(``JsonFormatter``, ``ScopeFilter``) on a StringIO, so what is asserted is
what an operator's log would hold. The plugin ``log`` host function runs in a
real plugin (plugins/echo) on the Extism engine.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from arcana.config import LoggingConfig, TracingConfig, load_config
from arcana.kernel import Kernel
from arcana.logs import QUIET_LOGGERS, JsonFormatter, ScopeFilter, setup_logging
from arcana.queue.types import JobState
from arcana.tracing import build_tracing
from arcana.types import CallContext
from conftest import ROOT
from fakes import TEST_SECRET, Kernels, bearer, host, trap
from runtime.queue.worker_harness import Harness
from runtime.rest_calls import rest, serve_app

TRACE = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE}-b7ad6b7169203331-01"
Lines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Every record reaching the root logger, as the JSON line the process would write."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScopeFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def logs_with_secrets(_envelope: Any, _context: CallContext) -> Any:
    fields = {"note": "kept", "token": "tok-leak", "auth": {"Authorization": "Bearer leak", "password": "pw-leak"}}
    host("log", {"level": "warn", "message": "plugin says", "fields": fields})
    return {"body": {}}


def test_a_plugins_log_line_carries_the_calls_fields_and_never_its_secrets(kernels: Kernels, lines: Lines) -> None:
    serve_app(kernels, logs_with_secrets, "2.1.0")
    headers = {**bearer("u-42", ["user"]), "x-request-id": "rid-log-1", "traceparent": TRACEPARENT}
    assert rest(kernels(), "POST", "/api/things/1", json={}, headers=headers).status_code == 200
    [line] = [line for line in lines() if line["message"] == "plugin says"]
    assert line["logger"] == "arcana.plugin" and line["level"] == "warning"
    assert (line["plugin"], line["plugin_version"]) == ("app", "2.1.0")
    assert (line["request_id"], line["trace_id"], line["principal"]) == ("rid-log-1", TRACE, "u-42")
    assert line["fields"] == {
        "note": "kept",
        "token": "[redacted]",
        "auth": {"Authorization": "[redacted]", "password": "[redacted]"},
    }
    written = json.dumps(lines())
    assert "leak" not in written
    # The principal is its subject only: the bearer token is in no line.
    assert headers["authorization"].split()[1] not in written


def test_a_kernel_line_written_on_the_event_loop_during_a_call_carries_the_calls_fields(
    kernels: Kernels, lines: Lines
) -> None:
    serve_app(kernels, trap(), "2.1.0")
    headers = {**bearer("u-7", ["user"]), "x-request-id": "rid-log-2", "traceparent": TRACEPARENT}
    assert rest(kernels(), "POST", "/api/things/1", json={}, headers=headers).status_code >= 500
    [line] = [line for line in lines() if line["message"].startswith("plugin call failed")]
    assert line["logger"] == "arcana.executor"
    assert (line["request_id"], line["trace_id"], line["principal"], line["plugin"]) == (
        "rid-log-2",
        TRACE,
        "u-7",
        "app",
    )


def test_lines_outside_any_request_carry_no_request_fields(lines: Lines) -> None:
    logging.getLogger("arcana.test").info("between requests")
    [line] = lines()
    assert not {"request_id", "trace_id", "plugin", "principal"} & set(line)


@pytest.mark.parametrize(
    "key", ["token", "access_token", "password", "client_secret", "Authorization", "cookie", "api_key", "X-Api-Key"]
)
def test_a_credential_named_field_is_never_written(key: str, lines: Lines) -> None:
    logging.getLogger("arcana.test").warning("with extras", extra={key: "s3cr3t-value", "kept": [{key: "s3cr3t"}]})
    [line] = lines()
    assert line[key] == "[redacted]" and line["kept"] == [{key: "[redacted]"}]
    assert "s3cr3t" not in json.dumps(line)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, was in levels.items():
            logging.getLogger(name).setLevel(was)


@pytest.mark.usefixtures("restored_logging")
def test_third_party_info_chatter_is_kept_out_unless_the_level_is_debug() -> None:
    stream = io.StringIO()
    setup_logging(LoggingConfig(level="info"), stream)
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("alembic.runtime.migration").warning("a real problem")
    logging.getLogger("arcana.kernel").info("plugin loaded")
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "a real problem",
        "plugin loaded",
    ]
    setup_logging(LoggingConfig(level="debug"), stream)
    assert logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)


# ---------------------------------------------------------------- a real plugin's log host function


@pytest.fixture
def echo_kernel(tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    monkeypatch.setenv("ARCANA_JWT_SECRET", TEST_SECRET)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copyfile(ROOT / "plugins" / "echo" / "echo.wasm", plugins / "echo.wasm")
    db = tmp_path / "arcana.db"
    shutil.copyfile(migrated_db, db)
    environ = {"ARCANA_PLUGINS__DIR": str(plugins), "ARCANA_DATABASE__URL": f"sqlite:///{db}"}
    kernel = Kernel(load_config(None, environ=environ))
    kernel.start()
    yield kernel
    kernel.close()


def test_the_echo_plugins_log_call_lands_in_the_process_stream_under_its_name(
    echo_kernel: Kernel, lines: Lines
) -> None:
    headers = {"x-request-id": "rid-echo", "traceparent": TRACEPARENT}
    assert rest(echo_kernel, "POST", "/api/v1/echo", json={"a": 1}, headers=headers).status_code == 200
    [line] = [line for line in lines() if line["message"] == "echoing request body"]
    assert line["logger"] == "arcana.plugin" and line["level"] == "debug"
    assert (line["plugin"], line["plugin_version"]) == ("echo", "1.0.0")
    assert (line["request_id"], line["trace_id"]) == ("rid-echo", TRACE)
    assert "principal" not in line  # a public route, an anonymous caller


# ---------------------------------------------------------------- the OpenTelemetry SDK's own warnings


@pytest.mark.usefixtures("restored_logging")
def test_a_full_span_queue_writes_one_warning_not_one_per_dropped_span() -> None:
    """The SDK's own duplicate filter holds back the rest; a flood of them would defeat the queue's bound."""
    stream = io.StringIO()
    setup_logging(LoggingConfig(level="info"), stream)
    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            release.wait(30)
            return SpanExportResult.SUCCESS

    tracing = build_tracing(TracingConfig(exporter="otlp", max_queue_size=4, max_export_batch_size=2), Stuck())
    assert tracing is not None
    for n in range(500):
        tracing.tracer.start_span(f"s{n}").end()
    release.set()
    tracing.shutdown()
    full = [line for line in stream.getvalue().splitlines() if "Queue full" in line]
    # One, or none when an earlier test in the process warned within the filter's window (it is the SDK's, shared).
    assert len(full) <= 1


# ---------------------------------------------------------------- jobs


def test_a_jobs_lines_carry_its_request_id_plugin_and_the_trace_it_continues(kernels: Kernels, lines: Lines) -> None:
    harness = Harness(kernels)

    async def scenario() -> str:
        await harness.serve("jobber", {"boom": trap()}, jobs={"t.boom": "boom"})
        job_id = harness.enqueue("t.boom", max_retries=0, traceparent=TRACEPARENT)
        async with harness.running(harness.worker()):
            await harness.settled(job_id, [JobState.DEAD])
        return job_id

    job_id = asyncio.run(scenario())
    [call] = [line for line in lines() if line["message"].startswith("plugin call failed")]
    assert (call["request_id"], call["plugin"], call["trace_id"]) == (f"{job_id}.1", "jobber", TRACE)
    [dead] = [line for line in lines() if line["message"].startswith("job dead")]
    assert (dead["job_id"], dead["trace_id"]) == (job_id, TRACE)


def test_the_loaded_line_and_a_faults_line_name_the_build_that_is_live(kernels: Kernels, lines: Lines) -> None:
    """Which build is serving, and which one trapped: the sha256's first 12 hex digits, as `plugin check` prints."""
    serve_app(kernels, trap(), "2.1.0")
    kernel = kernels()
    headers = {**bearer("u-7", ["user"]), "x-request-id": "rid-build-1"}
    assert rest(kernel, "POST", "/api/things/1", json={}, headers=headers).status_code >= 500
    build = kernel.registry.snapshot.plugins["app"].sha256[:12]
    [loaded] = [line for line in lines() if line["message"] == "plugin loaded"]
    assert (loaded["plugin"], loaded["plugin_version"], loaded["build"]) == ("app", "2.1.0", build)
    [fault] = [line for line in lines() if line["message"].startswith("plugin call failed")]
    assert (fault["request_id"], fault["build"], fault["plugin_version"]) == ("rid-build-1", build, "2.1.0")
