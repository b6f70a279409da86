"""The ordered composition of capabilities a kernel offers, and their per-plugin phase.

``Capabilities.from_config`` builds each capability once (init);
``configure`` runs every capability's configure step for one plugin version
and links exactly the host functions it was granted (configure), refusing it
with every problem otherwise. Per-call state is made lazily by the linked
functions (prepare, in ``arcana_host.binding``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import ConfigError, Problem
from arcana.manifest import Manifest
from arcana.queue.jobs import JobQueue
from arcana.queue.subscriptions import KERNEL_EVENTS_GRANT, reaches_kernel
from arcana.resilience.service import Resilience
from arcana.types import Capability, CapabilityRefused, LinkedFunction, PluginSpec
from arcana_host.auth import AuthCapability, Identity
from arcana_host.binding import link
from arcana_host.catalog import CAPABILITY_CLASSES, CATALOG, HOST_NAMESPACE, KNOWN_GRANTS
from arcana_host.events import Emitter, EventsCapability
from arcana_host.http import HttpCapability
from arcana_host.log import LogCapability
from arcana_host.queue import QueueCapability
from arcana_host.store import StoreCapability

# WASI and Extism's own env imports are linked by the engine, not by us.
ENGINE_NAMESPACE = "extism:host/env"
# How a manifest asks for a capability that takes a list rather than `true`.
REQUEST_EXAMPLES = {"events": '["note.*"]', "http": '["api.example.com"]'}


@dataclass(frozen=True)
class HostServices:
    """Kernel services a capability may be built on; absent in a dry run such as `arcana plugin check`."""

    identity: Identity | None = None
    database: Database | None = None
    # The kernel's job queue (queue_enqueue, queue_status) and event bus (event_emit, an arcana.events.EventBus).
    jobs: JobQueue | None = None
    bus: Emitter | None = None
    # The kernel's breakers and retry policy: backends are guarded by them when given.
    resilience: Resilience | None = None


# One factory per class in CAPABILITY_CLASSES, in the same order; each reads its own config section.
FACTORIES: tuple[Callable[[ArcanaConfig, HostServices], Capability], ...] = (
    lambda config, services: LogCapability(),
    lambda config, services: StoreCapability.from_config(config, services.database, services.resilience),
    lambda config, services: AuthCapability(services.identity),
    lambda config, services: QueueCapability.from_config(config, services.jobs),
    lambda config, services: EventsCapability.from_config(config, services.bus),
    lambda config, services: HttpCapability.from_config(
        config, services.resilience.http if services.resilience is not None else None
    ),
)


@dataclass(frozen=True)
class ConfiguredPlugin:
    """One plugin version's view of the host: what it may call, linked."""

    granted: frozenset[str]
    functions: tuple[LinkedFunction, ...]


class Capabilities:
    """All capabilities, in order; built once per kernel."""

    def __init__(self, capabilities: Sequence[Capability]) -> None:
        self._capabilities = tuple(capabilities)

    @classmethod
    def from_config(cls, config: ArcanaConfig, services: HostServices | None = None) -> Capabilities:
        built = [factory(config, services or HostServices()) for factory in FACTORIES]
        unclaimed = set(config.capabilities) - {cap.name for cap in built}
        if unclaimed:
            for cap in built:
                cap.close()
            raise ConfigError(
                f"unknown capability section(s) {sorted(unclaimed)} under 'capabilities' "
                f"(in {config.source}); known: {sorted(c.name for c in built)}"
            )
        return cls(built)

    def configure(
        self, manifest: Manifest, operator_grants: frozenset[str], imports: Sequence[tuple[str, str]]
    ) -> ConfiguredPlugin | list[Problem]:
        """Check grants and imports, then configure each granted capability; problems refuse the plugin."""
        problems = check_grants(manifest, operator_grants) + check_imports(
            manifest.name, imports, manifest.requested_capabilities(), operator_grants
        )
        granted = manifest.requested_capabilities() & operator_grants
        spec = PluginSpec(manifest, granted)
        functions: list[LinkedFunction] = []
        for cap in self._capabilities:
            wanted = [fn for fn in cap.functions if fn.grant in granted]
            if not wanted:
                continue
            try:
                state = cap.configure(spec)
            except CapabilityRefused as refused:
                problems += refused.problems
                continue
            functions += [link(cap, state, fn) for fn in wanted]
        return problems if problems else ConfiguredPlugin(granted, tuple(functions))

    def close(self) -> None:
        for cap in reversed(self._capabilities):
            cap.close()


def check_grants(manifest: Manifest, granted: frozenset[str]) -> list[Problem]:
    """Every requested capability must exist and be granted by the operator."""
    problems = []
    for cap in sorted(manifest.requested_capabilities()):
        if cap not in KNOWN_GRANTS:
            problems.append(
                Problem(f"capabilities.{cap}", "unknown capability", f"use one of {', '.join(sorted(KNOWN_GRANTS))}")
            )
        elif cap not in granted:
            problems.append(
                Problem(
                    f"capabilities.{cap}",
                    f"requested but not granted to '{manifest.name}' by the operator",
                    f"grant it in the config (grants: {{{manifest.name}: [{cap}]}}) or drop the request",
                )
            )
    return problems + check_subscriptions(manifest)


def check_subscriptions(manifest: Manifest) -> list[Problem]:
    """A [[subscribe]] that can hear the kernel's own events must request KERNEL_EVENTS_GRANT (granted above).

    Kernel events name users and client addresses: hearing them is a privilege an operator gives,
    like minting tokens, not something any plugin gets by writing ``topic = "*"``.
    """
    if KERNEL_EVENTS_GRANT in manifest.requested_capabilities():
        return []
    return [
        Problem(
            f"subscribe[{i}].topic",
            f"'{sub.topic}' would receive the kernel's events (auth.*, plugin.*, admin.*), "
            f"which the manifest does not request",
            f'add "{KERNEL_EVENTS_GRANT}" = true under [capabilities] (the operator must grant it too), '
            "or subscribe to narrower topics",
        )
        for i, sub in enumerate(manifest.subscriptions)
        if reaches_kernel(sub.topic)
    ]


def check_imports(
    name: str, imports: Sequence[tuple[str, str]], requested: frozenset[str], granted: frozenset[str]
) -> list[Problem]:
    """Least privilege before instantiation: every host import must be known, requested and granted."""
    problems = []
    for module, func in imports:
        if module == ENGINE_NAMESPACE:
            continue
        where = f"import {module}::{func}"
        if module != HOST_NAMESPACE:
            problems.append(
                Problem(
                    where,
                    f"namespace '{module}' is not offered to plugins (WASI and env imports are not available)",
                    f"build for wasm32-freestanding and import host functions from {HOST_NAMESPACE}",
                )
            )
            continue
        cap = CATALOG.get(func)
        if cap is None:
            problems.append(
                Problem(where, "is not a host function of Arcana", "remove it; sdk/README.md lists the host API")
            )
        elif cap not in granted:
            problems.append(
                Problem(
                    where,
                    f"needs capability '{cap}', which the operator has not granted to '{name}'",
                    f"grant it in the config (grants: {{{name}: [{cap}]}}) or remove the import",
                )
            )
        elif cap not in requested:
            problems.append(
                Problem(
                    where,
                    f"needs capability '{cap}', which the manifest does not request",
                    f"add {cap} = {REQUEST_EXAMPLES.get(cap, 'true')} under [capabilities]",
                )
            )
    return problems


assert len(FACTORIES) == len(CAPABILITY_CLASSES)  # one factory per declared class
