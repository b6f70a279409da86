"""The snapshot's job table: one plugin per job type, refused like a route clash; events by target."""

from __future__ import annotations

import asyncio

from arcana.queue.dispatch import route
from arcana.queue.types import Job, JobState, Priority
from fakes import FakePlugin, Kernels, reply, write_plugin
from runtime.queue.worker_harness import manifest


def job(job_type: str, target: str = "") -> Job:
    return Job("j", job_type, None, Priority.NORMAL, JobState.RUNNING, 1, 3, 0.0, 0.0, 0.0, target=target)


def test_a_job_type_routes_to_the_plugin_that_declares_it(kernels: Kernels) -> None:
    kernels.engine.define("a", FakePlugin({"run": reply({})}))
    write_plugin(kernels.plugins, manifest("a", jobs={"a.run": "run"}))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    snapshot = kernel.registry.snapshot
    found = route(snapshot, job("a.run"))
    assert found is not None and (found.plugin.name, found.handler, found.kind) == ("a", "run", "job")
    assert route(snapshot, job("a.other")) is None


def test_a_second_plugin_declaring_the_same_job_type_is_refused_and_the_first_keeps_it(kernels: Kernels) -> None:
    kernels.engine.define("a", FakePlugin({"run": reply({})}))
    kernels.engine.define("b", FakePlugin({"go": reply({})}))
    write_plugin(kernels.plugins, manifest("a", jobs={"shared.type": "run"}))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    write_plugin(kernels.plugins, manifest("b", jobs={"shared.type": "go"}))
    asyncio.run(kernel.load_all())
    [failure] = kernel.plugins_view().failures
    assert failure.name == "b"
    assert any("job type shared.type is already handled by plugin 'a'" in e for e in failure.errors), failure.errors
    assert kernel.registry.snapshot.jobs["shared.type"].plugin.name == "a"


def test_an_event_routes_to_its_target_only_while_that_handler_subscribes(kernels: Kernels) -> None:
    kernels.engine.define("audit", FakePlugin({"on_any": reply({}), "spare": reply({})}))
    write_plugin(kernels.plugins, manifest("audit", subscribe={"note.*": "on_any"}))
    kernel = kernels()
    asyncio.run(kernel.load_all())
    snapshot = kernel.registry.snapshot
    found = route(snapshot, job("note.created", target="audit/on_any"))
    assert found is not None and (found.handler, found.kind) == ("on_any", "event")
    assert route(snapshot, job("note.created", target="audit/spare")) is None
    assert route(snapshot, job("note.created", target="gone/on_any")) is None
