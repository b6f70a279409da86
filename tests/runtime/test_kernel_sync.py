"""The reload policy, Kernel.sync over real plugin files and the fake engine.

A broken new version leaves the old one serving; an identical build is a
no-op that clears a recorded failure; a deleted file unloads; a file still
being written is skipped until it settles.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from arcana.envelopes import HttpRequest
from arcana.kernel import Kernel
from arcana.registry import Snapshot
from arcana.types import CallContext
from arcana.wasm_binary import MANIFEST_SECTION
from arcana_sdk.wasm_sections import append_custom_section
from fakes import (
    WASM_HEADER,
    FakePlugin,
    Gate,
    Kernels,
    entered,
    greeter_descriptors,
    manifest_toml,
    route,
    wasm_bytes,
    write_plugin,
)


def version_of(_input: Any, context: CallContext) -> Any:
    """Answers with the version of the plugin that ran, so a test sees which version served."""
    return {"body": context.version}


def hello(version: str = "1.0.0", *, path: str = "/hello", handler: str = "hi") -> str:
    return manifest_toml("hello", version, routes=[route("GET", path, handler, public=True)])


@pytest.fixture
def hello_plugin(kernels: Kernels) -> FakePlugin:
    return kernels.engine.define("hello", FakePlugin({"hi": version_of}))


async def get(kernel: Kernel, path: str) -> str | None:
    """The version that serves GET ``path``, or None when nothing does."""
    match = kernel.core.route_http("GET", path)
    if match is None:
        return None
    response = await kernel.core.call_http(match, HttpRequest("GET", path, {}, {}, b"", "rid-sync"))
    return str(json.loads(response.body))


def serving(kernel: Kernel, path: str = "/hello") -> str | None:
    return asyncio.run(get(kernel, path))


def load(kernel: Kernel) -> Kernel:
    asyncio.run(kernel.load_all())
    return kernel


def sync(kernel: Kernel, *paths: Path) -> None:
    asyncio.run(kernel.sync(list(paths)))


def test_load_all_serves_every_plugin_file_below_the_folder_and_marks_the_kernel_ready(
    kernels: Kernels, hello_plugin: FakePlugin
) -> None:
    kernels.engine.define("deep", FakePlugin({"hi": version_of}))
    write_plugin(kernels.plugins, hello())
    (kernels.plugins / "sub").mkdir()
    write_plugin(kernels.plugins / "sub", manifest_toml("deep", "3.0.0", routes=[route("GET", "/deep", "hi")]))
    kernel = kernels()
    seen: list[Snapshot] = []

    async def listener(snapshot: Snapshot) -> None:
        seen.append(snapshot)

    kernel.on_change(listener)
    assert not kernel.ready
    load(kernel)
    assert kernel.ready and kernel.plugin_count == 2
    assert serving(kernel) == "1.0.0"
    assert [set(s.plugins) for s in seen] == [{"hello", "deep"}]


BREAKAGES = {
    "an invalid manifest": (hello("1.x"), "plugin.version"),
    "a handler the module does not export": (hello("2.0.0", handler="missing"), "handler missing"),
    "a route another plugin serves": (
        manifest_toml("hello", "2.0.0", routes=[route("GET", "/hello", "hi"), route("GET", "/other", "hi")]),
        "already served by plugin 'other'",
    ),
    "a limit above the operator's maximum": (
        manifest_toml("hello", "2.0.0", limits={"memory_mb": 4096}, routes=[route("GET", "/hello", "hi")]),
        "limits.memory_mb",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_new_version_leaves_the_old_one_serving(
    kernels: Kernels, hello_plugin: FakePlugin, breakage: str
) -> None:
    manifest, complaint = BREAKAGES[breakage]
    kernels.engine.define("other", FakePlugin({"hi": version_of}))
    write_plugin(kernels.plugins, manifest_toml("other", routes=[route("GET", "/other", "hi")]))
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    old = kernel.registry.snapshot.plugins["hello"]
    write_plugin(kernels.plugins, manifest)
    sync(kernel, path)
    assert kernel.registry.snapshot.plugins["hello"] is old
    assert serving(kernel) == "1.0.0"
    (failure,) = kernel.plugins_view().failures
    assert failure.source == str(path) and failure.still_serving == "1.0.0"
    assert complaint in " ".join(failure.errors)
    listed = {p.name: p for p in kernel.plugins_view().plugins}
    if failure.name == "hello":  # refused after its name was read: the serving version shows the error
        assert listed["hello"].last_error == failure.errors


REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "cannot be inspected": ({"reject_inspect": "not a valid WebAssembly module: bad section"}, "bad section"),
    "cannot be compiled": ({"reject_compile": "unknown opcode 0xfc"}, "unknown opcode"),
    "cannot be instantiated": ({"reject_instantiate": "out of table space"}, "out of table space"),
    "exports the handler with another ABI": (
        {"handlers": {}, "extra_exports": {"hi": (("i32",), ("i32",))}},
        "expected () -> i32",
    ),
}


@pytest.mark.parametrize("refusal", sorted(REFUSALS))
def test_a_module_the_engine_refuses_leaves_the_old_one_serving(
    kernels: Kernels, hello_plugin: FakePlugin, refusal: str
) -> None:
    knobs, complaint = REFUSALS[refusal]
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    kernels.engine.define("hello-v2", FakePlugin(**{"handlers": {"hi": version_of}, **knobs}))
    write_plugin(kernels.plugins, hello("2.0.0"), file="hello", key="hello-v2")
    sync(kernel, path)
    assert serving(kernel) == "1.0.0"
    (failure,) = kernel.plugins_view().failures
    assert failure.name == "hello" and complaint in " ".join(failure.errors)


def test_an_identical_build_is_a_no_op_that_keeps_the_serving_instances(
    kernels: Kernels, hello_plugin: FakePlugin
) -> None:
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    old = kernel.registry.snapshot.plugins["hello"]
    serving(kernel)
    made = hello_plugin.instances
    sync(kernel, path)
    assert kernel.registry.snapshot.plugins["hello"] is old
    serving(kernel)
    serving(kernel)
    # The reload's own warm instance was made and thrown away; the serving pool kept reusing its instance.
    assert hello_plugin.instances == made + 1
    assert len({c.instance for c in hello_plugin.calls}) == 1


def test_an_identical_build_clears_a_recorded_failure(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    old = kernel.registry.snapshot.plugins["hello"]
    write_plugin(kernels.plugins, hello("2.0.0", handler="missing"))
    sync(kernel, path)
    assert len(kernel.plugins_view().failures) == 1
    write_plugin(kernels.plugins, hello())
    sync(kernel, path)
    assert kernel.plugins_view().failures == ()
    assert kernel.registry.snapshot.plugins["hello"] is old
    assert kernel.plugins_view().plugins[0].last_error is None


def test_a_rebuild_with_the_same_manifest_is_loaded_and_retires_the_old_instances(
    kernels: Kernels, hello_plugin: FakePlugin
) -> None:
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    old = kernel.registry.snapshot.plugins["hello"]
    serving(kernel)
    write_plugin(kernels.plugins, hello(), build="rebuilt")
    sync(kernel, path)
    new = kernel.registry.snapshot.plugins["hello"]
    assert new is not old and new.sha256 != old.sha256 and new.manifest == old.manifest
    before = hello_plugin.instances
    asyncio.run(old.pool.call("hi", b"{}", CallContext("hello", "1.0.0")))  # a call that was in flight, say
    assert hello_plugin.instances == before + 1  # the retired pool had nothing idle left to reuse


def test_a_good_new_version_replaces_the_old_and_a_call_in_flight_finishes_on_the_old(kernels: Kernels) -> None:
    gate = Gate()

    def gated(envelope: Any, context: CallContext) -> Any:
        return gate(envelope, context) if context.version == "1.0.0" else version_of(envelope, context)

    plugin = kernels.engine.define("hello", FakePlugin({"hi": gated}))
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())

    async def scenario() -> tuple[Any, str | None]:
        in_flight = asyncio.create_task(kernel.core.call_http(kernel.core.route_http("GET", "/hello"), _req()))
        await entered(gate)
        write_plugin(kernels.plugins, hello("2.0.0"))
        await kernel.sync([path])
        after = await get(kernel, "/hello")
        gate.release()
        return await in_flight, after

    old_answer, new_answer = asyncio.run(scenario())
    assert json.loads(old_answer.body) == {"gate": "passed"} and new_answer == "2.0.0"
    assert [c.context.version for c in plugin.calls] == ["1.0.0", "2.0.0"]


def _req() -> HttpRequest:
    return HttpRequest("GET", "/hello", {}, {}, b"", "rid-sync")


def test_a_deleted_file_unloads_its_plugin(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    seen: list[Snapshot] = []

    async def listener(snapshot: Snapshot) -> None:
        seen.append(snapshot)

    kernel.on_change(listener)
    path.unlink()
    sync(kernel, path)
    assert serving(kernel) is None and kernel.plugin_count == 0
    assert kernel.plugins_view().plugins == () and kernel.plugins_view().failures == ()
    assert [dict(s.plugins) for s in seen] == [{}]


def test_deleting_a_refused_file_forgets_its_failure(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    path = write_plugin(kernels.plugins, hello("bad version"))
    kernel = load(kernels())
    assert len(kernel.plugins_view().failures) == 1
    path.unlink()
    sync(kernel, path)
    assert kernel.plugins_view().failures == ()


def test_a_file_still_being_written_is_skipped_and_loaded_once_it_settles(
    kernels: Kernels, hello_plugin: FakePlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_plugin(kernels.plugins, hello())
    kernel = load(kernels())
    half = wasm_bytes(hello("2.0.0"))
    path.write_bytes(half[: len(half) // 2])
    real_fdopen, real_stat = os.fdopen, os.stat
    opened: list[int] = []
    resolved = str(path.resolve())

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(fd)
        return real_fdopen(fd, *args, **kwargs)

    def stat_while_a_writer_appends(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if opened and os.fspath(target) == resolved:  # the loader's check after its read: the writer was at work
            opened.clear()
            with real_fdopen(os.open(resolved, os.O_WRONLY | os.O_APPEND), "ab") as more:
                more.write(half[len(half) // 2 :])
        return real_stat(target, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(os, "fdopen", fdopen)
        m.setattr(os, "stat", stat_while_a_writer_appends)
        sync(kernel, path)
    assert kernel.plugins_view().failures == ()  # not refused: skipped
    assert serving(kernel) == "1.0.0"
    sync(kernel, path)  # the watcher's next event, once the writer is done
    assert serving(kernel) == "2.0.0"


def test_a_truncated_module_is_refused_naming_the_module(kernels: Kernels) -> None:
    path = kernels.plugins / "cut.wasm"
    path.write_bytes(append_custom_section(WASM_HEADER, MANIFEST_SECTION, hello().encode())[:-5])
    kernel = load(kernels())
    (failure,) = kernel.plugins_view().failures
    assert failure.name is None and failure.errors[0].startswith("module:")
    assert failure.still_serving is None


def test_a_failed_first_load_serves_once_the_file_is_fixed(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    path = write_plugin(kernels.plugins, hello("2.0.0", handler="missing"))
    kernel = load(kernels())
    (failure,) = kernel.plugins_view().failures
    assert failure.still_serving is None
    write_plugin(kernels.plugins, hello("2.0.1"))
    sync(kernel, path)
    assert serving(kernel) == "2.0.1" and kernel.plugins_view().failures == ()


def test_the_same_plugin_name_in_a_second_file_is_refused(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    write_plugin(kernels.plugins, hello(), file="a")
    write_plugin(kernels.plugins, hello("9.0.0"), file="b")
    kernel = load(kernels())
    assert serving(kernel) == "1.0.0"
    (failure,) = kernel.plugins_view().failures
    assert failure.source.endswith("b.wasm") and "already loaded from" in failure.errors[0]


def test_a_plugin_renamed_in_its_file_replaces_the_old_name(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    kernels.engine.define("hola", FakePlugin({"hi": version_of}))
    path = write_plugin(kernels.plugins, hello(), file="greeting")
    kernel = load(kernels())
    renamed = manifest_toml("hola", "2.0.0", routes=[route("GET", "/hello", "hi", public=True)])
    write_plugin(kernels.plugins, renamed, file="greeting")
    sync(kernel, path)
    assert kernel.plugins_view().failures == ()
    assert set(kernel.registry.snapshot.plugins) == {"hola"} and serving(kernel) == "2.0.0"
    path.unlink()
    sync(kernel, path)
    assert kernel.plugin_count == 0 and serving(kernel) is None


def test_a_changed_sidecar_manifest_reloads_the_module_beside_it(kernels: Kernels, hello_plugin: FakePlugin) -> None:
    path = write_plugin(kernels.plugins, None, file="hello", key="hello")
    sidecar = path.with_suffix(".toml")
    sidecar.write_text(hello())
    kernel = load(kernels())
    assert serving(kernel) == "1.0.0"
    sidecar.write_text(hello("1.1.0"))
    assert kernel.sidecar_owner(sidecar) == path
    sync(kernel, path)
    assert serving(kernel) == "1.1.0"


def test_a_changed_descriptor_sidecar_reloads_the_plugin(kernels: Kernels) -> None:
    kernels.engine.define("greeter", FakePlugin({"say": lambda _e, _c: {"message": {}}}))
    manifest = manifest_toml("greeter", grpc=[{"method": "fake.v1.Greeter/Say", "handler": "say"}])
    path = write_plugin(kernels.plugins, manifest)
    sidecar = path.with_suffix(".pb")
    sidecar.write_bytes(greeter_descriptors())
    kernel = load(kernels())
    before = kernel.core.rpc_target("/fake.v1.Greeter/Say")
    assert before is not None and "greeting" not in before.method.output_type.DESCRIPTOR.fields_by_name
    sidecar.write_bytes(greeter_descriptors(counted_extra="greeting"))
    assert kernel.sidecar_owner(sidecar) == path
    sync(kernel, path)
    after = kernel.core.rpc_target("/fake.v1.Greeter/Say")
    assert after is not None and "greeting" in after.method.output_type.DESCRIPTOR.fields_by_name


def test_each_reload_logs_the_build_it_put_live(
    kernels: Kernels, hello_plugin: FakePlugin, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_plugin(kernels.plugins, hello())
    with caplog.at_level(logging.INFO, "arcana.kernel"):
        kernel = load(kernels())
        write_plugin(kernels.plugins, hello("1.0.1"), build="rebuilt")
        sync(kernel, path)
    live = kernel.registry.snapshot.plugins["hello"].sha256
    loaded = [r for r in caplog.records if r.getMessage() == "plugin loaded"]
    assert [(r.plugin_version, len(r.build)) for r in loaded] == [("1.0.0", 12), ("1.0.1", 12)]  # type: ignore[attr-defined]
    assert loaded[1].build == live[:12] and loaded[0].build != loaded[1].build  # type: ignore[attr-defined]


BROKEN = {
    "garbage bytes": lambda path: path.write_bytes(b"not a module"),
    "a truncated module": lambda path: path.write_bytes(path.read_bytes()[:-5]),
    "an invalid manifest": lambda path: write_plugin(path.parent, hello("bad version")),
    "a missing handler": lambda path: write_plugin(path.parent, hello("2.0.0", handler="missing")),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_the_same_good_build_after_a_broken_file_clears_the_listing_and_says_so(
    kernels: Kernels, hello_plugin: FakePlugin, caplog: pytest.LogCaptureFixture, broken: str
) -> None:
    """Good build, a broken file at the same path, the same good build again: no failure is listed for it.

    The identical build used to return early as "unchanged" and left the failure listed.
    """
    path = write_plugin(kernels.plugins, hello())
    good = path.read_bytes()
    kernel = load(kernels())
    BROKEN[broken](path)
    sync(kernel, path)
    (failure,) = kernel.plugins_view().failures
    assert failure.source == str(path) and failure.still_serving == "1.0.0"
    path.write_bytes(good)
    with caplog.at_level(logging.INFO, "arcana.kernel"):
        sync(kernel, path)
    view = kernel.plugins_view()
    assert view.failures == () and [(p.name, p.last_error) for p in view.plugins] == [("hello", None)]
    (back,) = [r for r in caplog.records if r.getMessage() == "plugin file is back to the serving build"]
    assert back.build == kernel.registry.snapshot.plugins["hello"].sha256[:12]  # type: ignore[attr-defined]
