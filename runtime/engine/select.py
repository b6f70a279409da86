"""One Engine for the kernel that hands each binary to the engine of its kind, by its preamble.

``\\0asm`` + version 1 is a core module (Extism); ``\\0asm`` + ``0d 00 01 00``
is a WebAssembly component. The loader, the kernel and `arcana plugin check`
keep one Engine object; the component engine (wasmtime's component model, an
epoch ticker thread) is made only when the first component shows up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from arcana.engine import CompiledModule, Engine, ModuleInfo
from arcana.types import LinkedFunction
from arcana.wasm_binary import is_component


class SelectingEngine:
    def __init__(self, modules: Engine, components: Callable[[], Engine]) -> None:
        """``components``: makes the component engine, on first use."""
        self._modules = modules
        self._make_components = components
        self._components: Engine | None = None
        self._lock = threading.Lock()

    @property
    def components(self) -> Engine:
        with self._lock:
            if self._components is None:
                self._components = self._make_components()
            return self._components

    def _pick(self, wasm: bytes) -> Engine:
        return self.components if is_component(wasm) else self._modules

    def inspect(self, wasm: bytes) -> ModuleInfo:
        return self._pick(wasm).inspect(wasm)

    def compile(
        self,
        wasm: bytes,
        functions: Sequence[LinkedFunction],
        *,
        memory_mb: int,
        timeout_ms: int,
        config: Mapping[str, str] | None = None,
    ) -> CompiledModule:
        return self._pick(wasm).compile(wasm, functions, memory_mb=memory_mb, timeout_ms=timeout_ms, config=config)
