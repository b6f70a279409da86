"""One trace from an HTTP request through the job it enqueued: a real plugin, the real queue, an in-memory exporter.

The kernel runs the queueprobe fixture (tests/fixtures/plugins/queueprobe) on the
Extism engine, on SQLite with the SQL queue backend; its public route enqueues
a ``probe.work`` job through the ``queue_enqueue`` host function, and a worker
on the same kernel runs it, the job's handler answering the traceparent its
envelope carried.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from arcana.config import QueueConfig, load_config
from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from arcana.queue.types import JobState
from arcana.queue.worker import Worker
from arcana.tracing import Tracing
from conftest import FIXTURES, build_cached, install
from fakes import TEST_SECRET, async_wait_for

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    yield exporter
    exporter.clear()


@pytest.fixture
def kernel(
    tmp_path: Path, migrated_db: Path, exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Kernel]:
    monkeypatch.setenv("ARCANA_JWT_SECRET", TEST_SECRET)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install(build_cached(FIXTURES / "queueprobe"), plugins, "queueprobe")
    db = tmp_path / "arcana.db"
    shutil.copyfile(migrated_db, db)
    config_file = tmp_path / "arcana.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "plugins": {"dir": str(plugins), "watch": False},
                "database": {"url": f"sqlite:///{db}"},
                "grants": {"*": ["log"], "queueprobe": ["queue", "events"]},
                "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 1024},
            }
        )
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    made = Kernel(load_config(config_file), tracing=Tracing.on(provider))
    made.start()
    yield made
    made.close()
    provider.shutdown()


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, f"{span.name} has no parent"
    return span.parent.span_id


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def test_a_job_enqueued_by_a_plugin_during_a_request_continues_the_requests_trace(
    kernel: Kernel, exporter: InMemorySpanExporter
) -> None:
    async def main() -> tuple[httpx.Response, Any]:
        await kernel.load_all()
        assert kernel.plugins_view().failures == (), kernel.plugins_view().failures
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            response = await client.post(
                "/probe/queue",
                json={"call": "enqueue", "type": "probe.work", "payload": {"n": 1}},
                headers={"traceparent": f"00-{TRACE}-{PARENT}-01"},
            )
        assert response.status_code == 200, response.text
        job_id = response.json()["result"]["id"]
        worker = Worker(QueueConfig(poll_interval_ms=5), kernel.jobs.backend, kernel.registry, tracing=kernel.tracing)
        running = asyncio.create_task(worker.run())
        try:

            def done() -> bool:
                job = kernel.jobs.get(job_id)
                return job is not None and job.state in (JobState.SUCCEEDED, JobState.DEAD)

            await async_wait_for(done, 30, "the job to run")
        finally:
            worker.stop()
            await running
        job = kernel.jobs.get(job_id)
        assert job is not None and job.state == JobState.SUCCEEDED, job
        return response, job.result

    _response, result = asyncio.run(main())
    spans = list(exporter.get_finished_spans())
    request = one(spans, "POST /probe/queue")
    call = one(spans, "plugin.call queueprobe probe")
    enqueue = one(spans, "host queue_enqueue")
    job = one(spans, "job probe.work")
    work = one(spans, "plugin.call queueprobe work")

    # One trace, from the caller's traceparent to the job's plugin call.
    assert {trace_of(s) for s in (request, call, enqueue, job, work)} == {int(TRACE, 16)}
    assert parent_of(request) == int(PARENT, 16)
    assert parent_of(call) == span_id(request) and parent_of(enqueue) == span_id(call)
    # The job continues the plugin call that enqueued it, and its own plugin call runs under the job.
    assert job.kind == SpanKind.CONSUMER and parent_of(job) == span_id(call)
    assert parent_of(work) == span_id(job)
    assert (job.attributes or {})["arcana.job.type"] == "probe.work"
    assert (enqueue.attributes or {})["arcana.capability"] == "queue"
    assert (enqueue.attributes or {})["arcana.outcome"] == "ok"
    # What the job's handler read from its envelope: its own call's span, in the same trace.
    assert result["traceparent"] == f"00-{TRACE}-{span_id(work):016x}-01"
