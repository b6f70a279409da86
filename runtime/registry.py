"""The kernel's registry: loaded plugins and the route table, swapped whole.

Readers take ``registry.snapshot`` once per request and use only that
immutable snapshot, so a reload never shows a half-built table; in-flight
calls keep the plugin version they started on. Writers serialize on a lock
(the watcher and the admin API may both reload).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from arcana.contract import EMPTY, Contract
from arcana.descriptors import DescriptorSet, RpcMethod
from arcana.errors import Problem
from arcana.executor import EffectiveLimits, InstancePool
from arcana.manifest import GrpcMethod, Job, Manifest, Route
from arcana.paths import RouteTrie


@dataclass(frozen=True)
class LoadedPlugin:
    manifest: Manifest
    source: Path
    sha256: str
    pool: InstancePool
    loaded_at: float = field(default_factory=time.time)
    descriptors: DescriptorSet | None = None
    rpc: Mapping[str, RpcMethod] = field(default_factory=dict)
    # The routes' schemas, resolved and compiled for this version (arcana.contract).
    contract: Contract = EMPTY

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def limits(self) -> EffectiveLimits:
        return self.pool.limits

    @property
    def in_flight(self) -> int:
        return self.pool.in_flight


@dataclass(frozen=True)
class RouteTarget:
    plugin: LoadedPlugin
    route: Route


@dataclass(frozen=True)
class RpcTarget:
    plugin: LoadedPlugin
    entry: GrpcMethod
    method: RpcMethod


@dataclass(frozen=True)
class JobTarget:
    plugin: LoadedPlugin
    job: Job


@dataclass(frozen=True)
class LoadFailure:
    source: Path
    problems: tuple[Problem, ...]
    plugin: str | None
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Snapshot:
    plugins: Mapping[str, LoadedPlugin]
    routes: RouteTrie[RouteTarget]
    # "/pkg.Service/Method" (the gRPC wire path) -> target.
    rpc: Mapping[str, RpcTarget]
    # Job type -> the [[job]] that handles it: one plugin per type, so no job runs twice by design.
    jobs: Mapping[str, JobTarget]

    @classmethod
    def build(cls, plugins: Mapping[str, LoadedPlugin]) -> tuple[Snapshot, dict[str, list[Problem]]]:
        """A snapshot of ``plugins``, in load order; later plugins lose route, method and job type conflicts."""
        trie: RouteTrie[RouteTarget] = RouteTrie()
        rpc: dict[str, RpcTarget] = {}
        jobs: dict[str, JobTarget] = {}
        conflicts: dict[str, list[Problem]] = {}
        for plugin in plugins.values():
            for i, job in enumerate(plugin.manifest.jobs):
                if job.type in jobs:
                    conflicts.setdefault(plugin.name, []).append(_job_clash(i, job.type, jobs[job.type], plugin))
                else:
                    jobs[job.type] = JobTarget(plugin, job)
            for i, entry in enumerate(plugin.manifest.grpc):
                wire = "/" + entry.method
                if wire in rpc:
                    conflicts.setdefault(plugin.name, []).append(
                        Problem(
                            f"grpc[{i}].method",
                            f"{entry.method} is already served by plugin '{rpc[wire].plugin.name}'",
                            "rename the service or package, or unload the other plugin first",
                        )
                    )
                else:
                    rpc[wire] = RpcTarget(plugin, entry, plugin.rpc[entry.method])
            for i, route in enumerate(plugin.manifest.routes):
                taken = trie.add(route.method, route.path, RouteTarget(plugin, route))
                if taken is not None:
                    owner = taken[1].plugin.name
                    conflicts.setdefault(plugin.name, []).append(
                        Problem(
                            f"route[{i}]",
                            f"{route.method} {route.path.raw} is already served by plugin '{owner}' as {taken[0].raw}",
                            "choose another path, or unload the other plugin first",
                        )
                    )
        snapshot = cls(MappingProxyType(dict(plugins)), trie, MappingProxyType(rpc), MappingProxyType(jobs))
        return snapshot, conflicts


def _job_clash(index: int, job_type: str, taken: JobTarget, plugin: LoadedPlugin) -> Problem:
    if taken.plugin is plugin:
        return Problem(f"job[{index}].type", f"job type {job_type} is declared twice", "keep one [[job]] per type")
    return Problem(
        f"job[{index}].type",
        f"job type {job_type} is already handled by plugin '{taken.plugin.name}'",
        "choose another job type, or unload the other plugin first",
    )


class Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plugins: dict[str, LoadedPlugin] = {}
        self._failures: dict[Path, LoadFailure] = {}
        self.snapshot, _ = Snapshot.build({})

    @property
    def failures(self) -> Mapping[Path, LoadFailure]:
        return MappingProxyType(dict(self._failures))

    def install(self, plugin: LoadedPlugin) -> list[Problem]:
        """Add or replace a plugin; on any conflict nothing changes and the problems return.

        It replaces the plugin of the same name from the same file, and whatever
        its file held before (a file whose plugin was renamed holds only the new one).
        """
        with self._lock:
            owner = self._plugins.get(plugin.name)
            if owner is not None and owner.source != plugin.source:
                return [
                    Problem(
                        "plugin.name",
                        f"'{plugin.name}' is already loaded from {owner.source}",
                        "give this plugin another name or remove the other file",
                    )
                ]
            replaced = [p for p in self._plugins.values() if p.source == plugin.source]
            candidate = {n: p for n, p in self._plugins.items() if p.source != plugin.source}
            candidate[plugin.name] = plugin
            snapshot, conflicts = Snapshot.build(candidate)
            if plugin.name in conflicts:
                return conflicts[plugin.name]
            self._plugins = candidate
            self.snapshot = snapshot
            self._failures.pop(plugin.source, None)
        for old in replaced:
            old.pool.retire()
        return []

    def remove(self, source: Path) -> LoadedPlugin | None:
        with self._lock:
            self._failures.pop(source, None)
            gone = next((p for p in self._plugins.values() if p.source == source), None)
            if gone is None:
                return None
            candidate = {n: p for n, p in self._plugins.items() if n != gone.name}
            self.snapshot, _ = Snapshot.build(candidate)
            self._plugins = candidate
        gone.pool.retire()
        return gone

    def clear_failure(self, source: Path) -> None:
        with self._lock:
            self._failures.pop(source, None)

    def record_failure(self, failure: LoadFailure) -> None:
        with self._lock:
            self._failures[failure.source] = failure
