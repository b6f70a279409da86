"""Reads a module's imports and exports with wasmtime, before anything runs."""

from __future__ import annotations

import wasmtime

from arcana.engine import ModuleInfo
from arcana.errors import ModuleRejected


class ModuleInspector:
    def __init__(self) -> None:
        config = wasmtime.Config()
        # Inspection only needs the module's structure, not fast code.
        config.cranelift_opt_level = "none"
        self._engine = wasmtime.Engine(config)

    def inspect(self, wasm: bytes) -> ModuleInfo:
        try:
            module = wasmtime.Module(self._engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleRejected(f"not a valid WebAssembly module: {str(exc).splitlines()[0]}") from exc
        imports = tuple((imp.module, imp.name or "") for imp in module.imports)
        exports = {}
        for exp in module.exports:
            if isinstance(exp.type, wasmtime.FuncType):
                exports[exp.name] = (tuple(str(p) for p in exp.type.params), tuple(str(r) for r in exp.type.results))
        return ModuleInfo(imports, exports)
