"""The engine seam: compile bytes -> compiled module -> instance -> call.

The executor talks only to these protocols, never to Extism or wasmtime; this
package is the only one that imports them. Extism (core modules, Extism ABI)
is the first engine; a WebAssembly-component engine can sit beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from arcana_host.capability import CallContext, HostFunction


class GuestFault(Exception):
    """The guest failed: ``kind`` is trap, timeout, oom or cancelled."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class ModuleRejected(Exception):
    """The bytes are not a module this engine can run (invalid, truncated...)."""


@dataclass(frozen=True)
class ModuleInfo:
    imports: tuple[tuple[str, str], ...]
    # Exported functions with their signature, e.g. {"hello": ((), ("i32",))}.
    exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]


class Instance(Protocol):
    def call(self, handler: str, data: bytes, context: CallContext) -> bytes: ...

    def cancel(self) -> None: ...


class CompiledModule(Protocol):
    def instantiate(self) -> Instance: ...


class Engine(Protocol):
    def inspect(self, wasm: bytes) -> ModuleInfo: ...

    def compile(
        self, wasm: bytes, functions: Sequence[HostFunction], *, memory_mb: int, timeout_ms: int
    ) -> CompiledModule: ...
