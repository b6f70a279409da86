"""The ordered composition of capabilities the kernel offers to plugins."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from arcana.config import ArcanaConfig
from arcana.errors import ConfigError, Problem
from arcana.manifest import Manifest
from arcana_host.capability import Capability, HostFunction, HostServices
from arcana_host.catalog import CATALOG, HOST_NAMESPACE
from arcana_host.identity import IdentityCapability
from arcana_host.logs import LogCapability
from arcana_host.store import StoreCapability

# Grants that are not host-function capabilities of their own but options of
# one (e.g. `auth.issue` widens `auth`).
KNOWN_GRANTS = frozenset(CATALOG.values()) | {"log"}

# The capabilities a kernel offers, in order: each factory reads its own
# config section (``config.section(name, ItsConfig)``) and builds its state.
FACTORIES: tuple[Callable[[ArcanaConfig, HostServices], Capability], ...] = (
    lambda config, services: LogCapability(),
    lambda config, services: StoreCapability.from_config(config, services.database),
    lambda config, services: IdentityCapability(services.identity),
)


class Capabilities:
    """All capabilities, in order; built once per kernel."""

    def __init__(self, capabilities: Sequence[Capability]) -> None:
        self._capabilities = list(capabilities)
        self._functions: dict[str, HostFunction] = {}
        for cap in self._capabilities:
            for fn in cap.host_functions():
                self._functions[fn.name] = fn

    @classmethod
    def from_config(cls, config: ArcanaConfig, services: HostServices | None = None) -> Capabilities:
        capabilities = [factory(config, services or HostServices()) for factory in FACTORIES]
        unclaimed = set(config.capabilities) - {cap.name for cap in capabilities}
        if unclaimed:
            for cap in capabilities:
                cap.close()
            raise ConfigError(
                f"unknown capability section(s) {sorted(unclaimed)} under 'capabilities' "
                f"(in {config.source}); known: {sorted(c.name for c in capabilities)}"
            )
        return cls(capabilities)

    @property
    def available(self) -> frozenset[str]:
        return frozenset(cap.name for cap in self._capabilities)

    def check_imports(
        self, name: str, imports: Sequence[tuple[str, str]], requested: frozenset[str], granted: frozenset[str]
    ) -> list[Problem]:
        """Least privilege before instantiation: every host import must be known and granted."""
        problems = []
        for module, func in imports:
            if module == "extism:host/env":
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
                    Problem(
                        where,
                        "is not a host function of Arcana",
                        "remove the import; see the host API in ARCHITECTURE.md 3.4",
                    )
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
                        f"add {cap} = true under [capabilities]",
                    )
                )
            elif func not in self._functions:
                problems.append(
                    Problem(
                        where,
                        f"capability '{cap}' is not available in this kernel",
                        "remove the import or upgrade Arcana",
                    )
                )
        return problems

    def check_grants(self, manifest: Manifest, granted: frozenset[str]) -> list[Problem]:
        problems = []
        for cap in sorted(manifest.requested_capabilities()):
            if cap not in KNOWN_GRANTS:
                problems.append(
                    Problem(
                        f"capabilities.{cap}", "unknown capability", f"use one of {', '.join(sorted(KNOWN_GRANTS))}"
                    )
                )
            elif cap not in granted:
                problems.append(
                    Problem(
                        f"capabilities.{cap}",
                        f"requested but not granted to '{manifest.name}' by the operator",
                        f"grant it in the config (grants: {{{manifest.name}: [{cap}]}}) or drop the request",
                    )
                )
        for cap in self._capabilities:
            problems.extend(cap.configure(manifest))
        return problems

    def functions_for(self, granted: frozenset[str]) -> list[HostFunction]:
        """Only the functions this plugin may call: the engine links nothing else."""
        return [fn for fn in self._functions.values() if fn.capability in granted]

    def close(self) -> None:
        for cap in reversed(self._capabilities):
            cap.close()
