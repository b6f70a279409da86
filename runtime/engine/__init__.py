"""The engine seam: compile bytes -> compiled module -> instance -> call.

The executor talks only to these protocols, never to Extism or wasmtime; this
package is the only one that imports them. Extism (core modules, Extism ABI)
is the first engine; a WebAssembly-component engine can sit beside it. An
engine reports a failed guest call as ``GuestFault`` and a module it cannot
run as ``ModuleRejected`` (both in ``arcana.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from arcana.types import CallContext, LinkedFunction


@dataclass(frozen=True)
class ModuleInfo:
    imports: tuple[tuple[str, str], ...]
    # Exported functions with their signature, e.g. {"hello": ((), ("i32",))}.
    exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]
    # A WebAssembly component (``handle``/``handlers`` exports): its handlers are known only from a
    # running instance (``ListsHandlers``), so the loader checks them on the warm instance.
    component: bool = False
    # Imports no engine offers (a component's WASI or other package's interfaces), refused at load.
    foreign: tuple[str, ...] = ()


class Instance(Protocol):
    def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        """Run ``handler``; the guest reads ``context.call_config`` as config for this call only (none: none)."""
        ...

    def cancel(self) -> None: ...


@runtime_checkable
class ListsHandlers(Protocol):
    """An instance that can say which handlers it serves (a component's ``handlers`` export)."""

    def handlers(self) -> list[str]: ...


class CompiledModule(Protocol):
    def instantiate(self) -> Instance: ...

    def inline_twin(self, max_ms: int) -> CompiledModule:
        """A twin of this module for inline calls: the engine stops each after about ``max_ms`` of guest work.

        A stopped call is ``GuestFault("timeout")``, as at the plugin's own limit.
        """
        ...


class Engine(Protocol):
    def inspect(self, wasm: bytes) -> ModuleInfo: ...

    def compile(
        self,
        wasm: bytes,
        functions: Sequence[LinkedFunction],
        *,
        memory_mb: int,
        timeout_ms: int,
        config: Mapping[str, str] | None = None,
    ) -> CompiledModule:
        """``config``: the plugin's config (manifest defaults, operator overrides), which every call can read."""
        ...
