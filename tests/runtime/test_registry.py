"""The registry: conflicts refuse a plugin and change nothing; installs and removals swap whole snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from arcana.descriptors import DescriptorSet
from arcana.errors import Problem
from arcana.executor import EffectiveLimits, InstancePool, ThreadShare, ThreadShares
from arcana.manifest import parse_manifest
from arcana.registry import LoadedPlugin, LoadFailure, Registry
from arcana.types import CallContext
from fakes import FakeEngine, FakePlugin, greeter_descriptors, manifest_toml, reply, route, wasm_bytes

GREETER = DescriptorSet.parse(greeter_descriptors())


@pytest.fixture
def threads() -> Iterator[ThreadShare]:
    pool = ThreadShares(2).get("test-plugin")
    yield pool
    pool.close()


class Maker:
    """LoadedPlugin values as the loader makes them, each with a fake module answering every route."""

    def __init__(self, threads: ThreadShare, root: Path) -> None:
        self.threads = threads
        self.root = root
        self.engine = FakeEngine()
        self.fakes: dict[InstancePool, FakePlugin] = {}

    def __call__(
        self, name: str, version: str = "1.0.0", *, routes: Sequence[str] = (), grpc: Sequence[str] = (), file: str = ""
    ) -> LoadedPlugin:
        entries = [route(*r.split(" "), "h", public=True) for r in routes]
        methods = [{"method": m, "handler": "h", "public": True} for m in grpc]
        manifest = parse_manifest(manifest_toml(name, version, routes=entries, grpc=methods))
        plugin = self.engine.define(f"{name}@{version}", FakePlugin({"h": reply({"body": version})}))
        wasm = wasm_bytes(None, key=f"{name}@{version}")
        compiled = self.engine.compile(wasm, [], memory_mb=16, timeout_ms=1000)
        pool = InstancePool(name, version, compiled, EffectiveLimits(16, 1000, 2), self.threads)
        source = self.root / f"{file or name}.wasm"
        rpc = {m: GREETER.method(m) for m in grpc}
        loaded = LoadedPlugin(manifest, source, version, pool, descriptors=GREETER if grpc else None, rpc=rpc)
        self.fakes[loaded.pool] = plugin
        return loaded


@pytest.fixture
def make(threads: ThreadShare, tmp_path: Path) -> Maker:
    return Maker(threads, tmp_path)


def reused(make: Maker, plugin: LoadedPlugin) -> bool:
    """Whether the plugin's pool still reuses instances (a retired pool makes one per call)."""
    fake = make.fakes[plugin.pool]
    before = fake.instances

    async def twice() -> None:
        for _ in range(2):
            await plugin.pool.call("h", b"{}", CallContext(plugin.name, plugin.manifest.version))

    asyncio.run(twice())
    return fake.instances - before < 2


def served_by(registry: Registry, method: str, path: str) -> str | None:
    found = registry.snapshot.routes.match(method, path)
    return None if found is None or isinstance(found, frozenset) else found.target.plugin.manifest.version


def test_install_swaps_in_a_new_snapshot_and_an_old_one_is_left_as_it_was(make: Maker) -> None:
    registry = Registry()
    before = registry.snapshot
    assert registry.install(make("a", routes=["GET /a"])) == []
    assert served_by(registry, "GET", "/a") == "1.0.0"
    assert before.routes.match("GET", "/a") is None and dict(before.plugins) == {}


def test_a_route_conflict_refuses_the_newcomer_and_changes_nothing(make: Maker) -> None:
    registry = Registry()
    registry.install(make("a", routes=["GET /items/{id}"]))
    before = registry.snapshot
    problems = registry.install(make("b", routes=["GET /other", "GET /items/{key}"]))
    assert problems == [
        Problem(
            "route[1]",
            "GET /items/{key} is already served by plugin 'a' as /items/{id}",
            "choose another path, or unload the other plugin first",
        )
    ]
    assert registry.snapshot is before
    assert served_by(registry, "GET", "/other") is None  # not even b's free routes


def test_a_grpc_method_conflict_refuses_the_newcomer(make: Maker) -> None:
    registry = Registry()
    registry.install(make("a", grpc=["fake.v1.Greeter/Say"]))
    problems = registry.install(make("b", grpc=["fake.v1.Greeter/Count", "fake.v1.Greeter/Say"]))
    assert [p.field for p in problems] == ["grpc[1].method"]
    assert "already served by plugin 'a'" in problems[0].message
    assert set(registry.snapshot.rpc) == {"/fake.v1.Greeter/Say"}
    assert registry.snapshot.rpc["/fake.v1.Greeter/Say"].plugin.name == "a"


def test_one_name_from_two_files_refuses_the_second(make: Maker) -> None:
    registry = Registry()
    first = make("a", routes=["GET /a"])
    registry.install(first)
    problems = registry.install(make("a", "2.0.0", routes=["GET /a"], file="copy-of-a"))
    assert [p.field for p in problems] == ["plugin.name"]
    assert registry.snapshot.plugins["a"] is first


def test_a_new_version_from_the_same_file_replaces_the_old_whose_pool_is_retired(make: Maker) -> None:
    registry = Registry()
    old, new = make("a", routes=["GET /a", "GET /old"]), make("a", "2.0.0", routes=["GET /a"])
    registry.install(old)
    assert registry.install(new) == []
    assert served_by(registry, "GET", "/a") == "2.0.0"
    assert served_by(registry, "GET", "/old") is None  # the old version's routes went with it
    assert not reused(make, old) and reused(make, new)


def test_a_refused_new_version_leaves_the_old_one_serving_and_its_pool_alive(make: Maker) -> None:
    registry = Registry()
    old = make("a", routes=["GET /a"])
    registry.install(old)
    registry.install(make("b", routes=["GET /b"]))
    assert registry.install(make("a", "2.0.0", routes=["GET /a", "GET /b"])) != []
    assert served_by(registry, "GET", "/a") == "1.0.0"
    assert reused(make, old)


def test_a_route_freed_by_a_new_version_can_be_taken(make: Maker) -> None:
    registry = Registry()
    registry.install(make("a", routes=["GET /x"]))
    registry.install(make("a", "2.0.0", routes=["GET /y"]))
    assert registry.install(make("b", routes=["GET /x"])) == []


def test_a_file_that_now_holds_another_plugin_replaces_what_it_held(make: Maker) -> None:
    registry = Registry()
    old = make("a", routes=["GET /a"], file="shared")
    registry.install(old)
    assert registry.install(make("b", routes=["GET /a"], file="shared")) == []
    assert set(registry.snapshot.plugins) == {"b"}
    assert not reused(make, old)
    registry.remove(old.source)
    assert dict(registry.snapshot.plugins) == {}


def test_a_renamed_plugin_does_not_leave_its_old_name_serving_from_the_same_file(make: Maker) -> None:
    registry = Registry()
    registry.install(make("a", routes=["GET /a"], file="shared"))
    registry.install(make("b", routes=["GET /b"], file="shared"))
    assert set(registry.snapshot.plugins) == {"b"}
    assert served_by(registry, "GET", "/a") is None


def test_remove_unloads_retires_and_clears_the_files_failure(make: Maker) -> None:
    registry = Registry()
    plugin = make("a", routes=["GET /a"])
    registry.install(plugin)
    registry.record_failure(LoadFailure(plugin.source, (Problem("x", "broken"),), "a"))
    assert registry.remove(plugin.source) is plugin
    assert served_by(registry, "GET", "/a") is None
    assert dict(registry.failures) == {}
    assert not reused(make, plugin)
    assert registry.remove(plugin.source) is None


def test_a_good_install_clears_the_failure_of_its_file(make: Maker) -> None:
    registry = Registry()
    plugin = make("a")
    registry.record_failure(LoadFailure(plugin.source, (Problem("x", "broken"),), "a"))
    registry.install(plugin)
    assert dict(registry.failures) == {}


def test_methods_not_allowed_are_reported_with_the_allowed_set(make: Maker) -> None:
    registry = Registry()
    registry.install(make("a", routes=["GET /a", "DELETE /a"]))
    assert registry.snapshot.routes.match("POST", "/a") == frozenset({"GET", "DELETE"})
