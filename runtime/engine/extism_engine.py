"""The Extism engine: core modules on the Extism ABI.

Host functions are linked per plugin from its granted set only, through our
own dispatch callback: the Extism Python SDK's default routes every call
through a process-global registry that hands every plugin every function.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import extism
import msgspec
from extism.extism import CancelHandle, CompiledPlugin, _ExtismFunctionMetadata
from extism_sys import ffi as _ffi
from extism_sys import lib as _lib

from arcana.engine import ModuleInfo
from arcana.engine.inspect import ModuleInspector
from arcana.errors import GuestFault, ModuleRejected
from arcana.types import HOST_NAMESPACE, CallContext, LinkedFunction

logger = logging.getLogger("arcana.engine")
WASM_PAGE = 65536
# An inline call's budget is counted in wasm instructions (wasmtime fuel), not wall-clock time.
# A 2 ms Extism time limit also stopped calls of 30 us, a few in ten thousand on a busy two-core
# machine: its timer thread raises the engine's epoch when a deadline passes, and one it handles
# late (the thread was not scheduled) lands on the next call. Fuel counts only what the guest does.
# A tight loop runs about 4 million instructions a millisecond here, typical code fewer, so
# ``max_ms * FUEL_PER_MS`` is about ``max_ms`` of work, or less. What fuel cannot count (one bulk
# memory instruction, a host function) is the executor's watchdog's business (``arcana.inline``).
FUEL_PER_MS = 2_000_000


@_ffi.callback("void(ExtismCurrentPlugin*, const ExtismVal*, ExtismSize, ExtismVal*, ExtismSize, void*)")
def _dispatch(current: Any, inputs: Any, n_inputs: int, outputs: Any, n_outputs: int, user_data: Any) -> None:
    fn: LinkedFunction = _ffi.from_handle(user_data)[0]
    try:
        ctx_handle = _lib.extism_current_plugin_host_context(current)
        context = _ffi.from_handle(ctx_handle) if ctx_handle != _ffi.NULL else None
        if not isinstance(context, CallContext):
            raise TypeError("host function called outside a plugin call")
        offset = inputs[0].v.i64
        length = _lib.extism_current_plugin_memory_length(current, offset)
        base = _lib.extism_current_plugin_memory(current)
        request = bytes(_ffi.buffer(base + offset, length)) if length else b""
        reply = fn.call(context, request)  # never raises: the binding maps every failure to an error value
        out = _lib.extism_current_plugin_memory_alloc(current, len(reply))
        if out == 0:
            outputs[0].v.i64 = 0
            return
        # The allocation may have grown memory, so re-read the base pointer.
        _ffi.memmove(_lib.extism_current_plugin_memory(current) + out, reply, len(reply))
        outputs[0].v.i64 = out
    except Exception:  # a raise here would be printed and dropped by cffi
        logger.exception("host call dispatch failed for %s", fn.name)
        outputs[0].v.i64 = 0


def _link(fn: LinkedFunction) -> extism.Function:
    return extism.Function(HOST_NAMESPACE, fn.name, [extism.ValType.I64], [extism.ValType.I64], _dispatch, fn)


def _utf8(text: str) -> str:
    """``text`` with what UTF-8 cannot hold (lone surrogates) replaced by '?'."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _fault(exc: extism.Error) -> GuestFault:
    text = str(exc)
    if text == "timeout":
        return GuestFault("timeout", "the call ran past its time limit")
    if text == "oom":
        return GuestFault("oom", "the plugin ran out of its memory limit")
    if "out of fuel" in text:
        return GuestFault("timeout", "the call ran past its instruction budget")
    if "cancel" in text.lower():
        return GuestFault("cancelled", "the call was cancelled")
    return GuestFault("trap", text.splitlines()[0] if text else "the plugin trapped")


# Extism's error when a call fails at its first step, the kernel's error_set run before the input is
# set and the handler called (``Plugin::clear_error`` in extism runtime/src/plugin.rs): no guest code
# of the call has run. Wasmtime checks epoch deadlines in every wasm function, and a store stays in
# "trap at the deadline" mode from its creation to the end of its first call, its deadline one epoch
# past the one it was made in. The epoch is its compiled module's, shared by every instance of it,
# and raised by every timeout or cancel of any of them. So an instance made before another instance
# of its module timed out or was cancelled (the pool's warm one, a spare inline one while the
# watchdog cancels another, one a thread just made) fails its first call here, and every later one:
# its deadline stays past, and nothing in Extism's C API sets it again.
NOT_STARTED = "unable to clear error message"


class ExtismInstance:
    def __init__(self, compiled: CompiledPlugin) -> None:
        self._compiled = compiled
        # (the Extism plugin, its cancel handle), swapped as one: the handle points into the plugin,
        # so ``cancel`` from another thread holds both while it uses the handle.
        self._live = self._fresh()
        # The per-call keys the instance holds now (the last call's): the next call sends only what differs.
        self._call_config: dict[str, str] = {}

    def _fresh(self) -> tuple[extism.Plugin, CancelHandle]:
        plugin = extism.Plugin(self._compiled, functions=None)
        return plugin, plugin.cancel_handle()

    @property
    def _plugin(self) -> extism.Plugin:
        return self._live[0]

    def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        try:
            return self._call(handler, data, context)
        except extism.Error as exc:
            if str(exc) != NOT_STARTED:
                raise _fault(exc) from exc
            stale = exc
        # No guest code of the call ran and this plugin can never run one again: the same call, once,
        # on a new plugin of the same module (made now: its deadline is one past the current epoch).
        logger.info("plugin instance could not start a call (%s): replaced by a new one", stale)
        try:
            self._live = self._fresh()
            self._call_config = {}  # the new plugin holds its module's config only
            return self._call(handler, data, context)
        except extism.Error as exc:
            raise _fault(exc) from exc

    def _call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        if context.call_config is not None or self._call_config:
            self._set_call_config(context.call_config or {})
        return bytes(self._plugin.call(handler, data, parse=None, host_context=context))

    def _set_call_config(self, values: dict[str, str]) -> None:
        """Make ``values`` this call's config keys on the live instance, and the last call's others gone.

        ``extism_plugin_config`` merges into the instance's config (a null removes a key), which
        config_get reads on each lookup; the Python SDK sets it only when a plugin is made. Each key
        sent costs Extism about 0.35 us, so only the keys that changed since the last call go (the
        method, route and most headers of a route's calls repeat).
        """
        held = self._call_config
        update: dict[str, str | None] = {key: None for key in held if key not in values}
        for key, value in values.items():
            if held.get(key) != value:
                update[key] = value
        if not update:
            return
        try:
            data = msgspec.json.encode(update)
        except UnicodeEncodeError:  # a lone surrogate: Extism's JSON parser would refuse its \ud800 escape
            data = msgspec.json.encode({_utf8(k): None if v is None else _utf8(v) for k, v in update.items()})
        if not _lib.extism_plugin_config(self._plugin.plugin, data, len(data)):
            raise GuestFault("trap", "the call's config could not be set on the instance")
        self._call_config = dict(values)

    def cancel(self) -> None:
        live = self._live  # holds the plugin alive while its handle is used
        live[1].cancel()


class ExtismCompiled:
    def __init__(self, compiled: CompiledPlugin, manifest: dict[str, Any], functions: list[extism.Function]) -> None:
        self._compiled = compiled
        self._manifest = manifest
        self._functions = functions

    def inline_twin(self, max_ms: int) -> ExtismCompiled:
        # Extism fixes limits per compiled module, not per call: the twin is compiled again, with no
        # time limit of its own (the watchdog cancels it instead) and a budget of fuel per call.
        manifest = {key: value for key, value in self._manifest.items() if key != "timeout_ms"}
        return _compile(manifest, self._functions, fuel=max_ms * FUEL_PER_MS)

    def instantiate(self) -> ExtismInstance:
        try:
            return ExtismInstance(self._compiled)
        except extism.Error as exc:
            raise ModuleRejected(f"cannot instantiate: {exc}") from exc


class ExtismEngine:
    def __init__(self) -> None:
        self._inspector = ModuleInspector()

    def inspect(self, wasm: bytes) -> ModuleInfo:
        return self._inspector.inspect(wasm)

    def compile(
        self,
        wasm: bytes,
        functions: Sequence[LinkedFunction],
        *,
        memory_mb: int,
        timeout_ms: int,
        config: Mapping[str, str] | None = None,
    ) -> ExtismCompiled:
        manifest: dict[str, Any] = {
            "wasm": [{"data": bytes(wasm)}],
            "memory": {"max_pages": max(1, memory_mb * 1024 * 1024 // WASM_PAGE)},
            "timeout_ms": timeout_ms,
        }
        if config:  # Extism's own plugin config: the guest's config_get (Config.get in a PDK) reads it
            manifest["config"] = dict(config)
        return _compile(manifest, [_link(f) for f in functions])


def _compile(manifest: dict[str, Any], functions: list[extism.Function], fuel: int | None = None) -> ExtismCompiled:
    try:
        if fuel is None:
            compiled = CompiledPlugin(manifest, wasi=False, functions=functions)
        else:
            compiled = _compile_with_fuel(manifest, functions, fuel)
    except extism.Error as exc:
        raise ModuleRejected(f"cannot compile: {str(exc).splitlines()[0]}") from exc
    return ExtismCompiled(compiled, manifest, functions)


def _compile_with_fuel(manifest: dict[str, Any], functions: list[extism.Function], fuel: int) -> CompiledPlugin:
    """``CompiledPlugin`` whose every call gets ``fuel`` instructions: the Python SDK has no argument for it."""
    data = json.dumps({**manifest, "wasm": [{"data": base64.b64encode(w["data"]).decode()} for w in manifest["wasm"]]})
    raw = data.encode()
    metadata = [_ExtismFunctionMetadata(f) for f in functions]  # Extism copies them; freed after the call
    pointers = _ffi.new("ExtismFunction*[]", [m.pointer for m in metadata]) if metadata else _ffi.NULL
    errmsg = _ffi.new("char**")
    pointer = _lib.extism_compiled_plugin_new_with_fuel_limit(
        raw, len(raw), pointers, len(metadata), False, fuel, errmsg
    )
    if pointer == _ffi.NULL:
        message = _ffi.string(errmsg[0]).decode(errors="replace")
        _lib.extism_plugin_new_error_free(errmsg[0])
        raise extism.Error(message)
    compiled = CompiledPlugin.__new__(CompiledPlugin)  # adopt the pointer: its __del__ frees it
    compiled.functions = functions
    compiled.pointer = pointer
    return compiled
