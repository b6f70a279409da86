"""The component engine: WebAssembly components (Python plugins) on wasmtime's component model.

The world is ``arcana:plugin@1.0.0`` (sdk/wit/arcana.wit): one imported
interface per grant, each function ``func(request: string) -> string`` on the
same JSON as the Extism ABI, so host functions stay defined once
(``LinkedFunction.call(context, bytes) -> bytes``) and are adapted here;
``clock``, ``random`` and ``config`` need no grant and are the engine's own.
Exports: ``handle(handler, input) -> output`` and ``handlers()``.

How a call reaches its CallContext: a host function runs synchronously on the
thread that called into the guest, so the instance puts itself in a
thread-local slot for the duration of the call and the host functions (linked
once per compiled component) read it there.

Limits: memory by the store's limiter (``memory_mb`` for each linear memory);
time by epoch interruption: one engine-wide ticker thread advances the epoch
every ``TICK_MS`` and each call gets a deadline of its time limit in ticks.
A failed call is a GuestFault and the executor discards the instance.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import wasmtime
from wasmtime import component as wc

from arcana.engine import ModuleInfo
from arcana.engine.artifact_cache import ArtifactCache
from arcana.errors import GuestFault, ModuleRejected
from arcana.types import HOST_NAMESPACE, CallContext, LinkedFunction

logger = logging.getLogger("arcana.engine")
PACKAGE = "arcana:plugin"
ABI = "1.0.0"
# The interfaces every component may import without a grant: the engine implements them.
ENGINE_INTERFACES = frozenset({"clock", "random", "config"})
# The epoch ticker's period: a call's time limit is rounded up to it (plus one tick).
TICK_MS = 10
# The most bytes one random-bytes call answers (a larger request gets this many).
MAX_RANDOM_BYTES = 65536
MIB = 1024 * 1024
# Components compiled by ``inspect`` and not yet taken by ``compile`` (the loader calls both, in order).
INSPECTED_KEEP = 4
_CURRENT = threading.local()


def interface_name(name: str) -> str | None:
    """``arcana:plugin/store@1.0.0`` -> ``store``; None for any other import (WASI, another package or ABI)."""
    prefix, suffix = f"{PACKAGE}/", f"@{ABI}"
    if name.startswith(prefix) and name.endswith(suffix):
        return name[len(prefix) : -len(suffix)]
    return None


def _error_reply(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})


def _fault(exc: Exception) -> GuestFault:
    """The GuestFault of a failed call.

    A guest's out-of-memory is a trap here: the store's limit makes ``memory.grow`` fail, CPython
    raises MemoryError, and an uncaught exception traps like any other (the component's stubbed
    WASI traps as it prints the traceback), so nothing tells the two apart from outside.
    """
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # wasmtime puts the guest's backtrace first and the cause last ("wasm trap: interrupt").
    cause = lines[-1] if lines else "the plugin trapped"
    if "interrupt" in cause:  # the epoch deadline passed
        return GuestFault("timeout", "the call ran past its time limit")
    if "arcana: call cancelled" in text:
        return GuestFault("cancelled", "the call was cancelled")
    return GuestFault("trap", cause)


class ComponentInstance:
    """One store and one instance of a component; not shared between threads."""

    def __init__(self, compiled: ComponentCompiled) -> None:
        self._compiled = compiled
        self._store = wasmtime.Store(compiled.engine)
        self._store.set_limits(memory_size=compiled.memory_mb * MIB)
        self._store.set_epoch_deadline(compiled.deadline_ticks)  # instantiation runs guest code too
        try:
            instance = compiled.linker.instantiate(self._store, compiled.component)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise ModuleRejected(f"cannot instantiate: {str(exc).splitlines()[0]}") from exc
        handle = instance.get_func(self._store, "handle")
        handlers = instance.get_func(self._store, "handlers")
        if handle is None or handlers is None:
            raise ModuleRejected("the component does not export handle and handlers")
        self._handle = handle
        self._handlers = handlers
        self.context: CallContext | None = None
        self.cancelled = False

    def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        output = self._enter(self._handle, context, handler, data)
        if not isinstance(output, bytes | bytearray | list):
            raise GuestFault("trap", "handle answered something other than bytes")
        return bytes(output)

    def handlers(self) -> list[str]:
        """The handler names the component says it serves (asked once, at load)."""
        names = self._enter(self._handlers, CallContext(plugin="", version=""))
        return [str(name) for name in names] if isinstance(names, list) else []

    def _enter(self, func: wc.Func, context: CallContext, *args: Any) -> Any:
        if self.cancelled:
            raise GuestFault("cancelled", "the call was cancelled")
        self.context = context
        _CURRENT.instance = self
        self._store.set_epoch_deadline(self._compiled.deadline_ticks)
        try:
            result = func(self._store, *args)
            func.post_return(self._store)  # frees what the guest allocated for the answer
            return result
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            raise _fault(exc) from exc
        finally:
            _CURRENT.instance = None
            self.context = None

    def cancel(self) -> None:
        # A store is not for use by two threads: the running call stops at its next host call
        # (which traps) or at its epoch deadline, whichever comes first; the instance is done either way.
        self.cancelled = True


class ComponentCompiled:
    def __init__(
        self,
        engine: wasmtime.Engine,
        component: wc.Component,
        functions: Sequence[LinkedFunction],
        memory_mb: int,
        timeout_ms: int,
        config: Mapping[str, str],
        imported: Mapping[str, Sequence[str]],
    ) -> None:
        self.engine = engine
        self.component = component
        self.memory_mb = memory_mb
        self.deadline_ticks = -(-timeout_ms // TICK_MS) + 1
        self._config = dict(config)
        self.linker = self._link(functions, imported)
        self._lock = threading.Lock()

    def _link(self, functions: Sequence[LinkedFunction], imported: Mapping[str, Sequence[str]]) -> wc.Linker:
        """A linker offering what the component imports: its granted host functions and the engine's interfaces.

        A function of an imported interface that was not granted stays undefined, so instantiation
        fails; the loader's grant check refused such a component before it got here.
        """
        by_name = {fn.name: fn for fn in functions}
        linker = wc.Linker(self.engine)
        with linker.root() as root:
            for iface, names in imported.items():
                if iface in ENGINE_INTERFACES:
                    continue
                with root.add_instance(f"{PACKAGE}/{iface}@{ABI}") as li:
                    for name in names:
                        fn = by_name.get(name.replace("-", "_"))
                        if fn is not None:
                            li.add_func(name, _adapt(fn))
            if "clock" in imported:
                with root.add_instance(f"{PACKAGE}/clock@{ABI}") as li:
                    li.add_func("now-ms", lambda _store: time.time_ns() // 1_000_000)
                    li.add_func("monotonic-ns", lambda _store: time.monotonic_ns())
            if "random" in imported:
                with root.add_instance(f"{PACKAGE}/random@{ABI}") as li:
                    li.add_func("random-bytes", lambda _store, n: os.urandom(min(int(n), MAX_RANDOM_BYTES)))
            if "config" in imported:
                with root.add_instance(f"{PACKAGE}/config@{ABI}") as li:
                    li.add_func("config-get", self._config_get)
        return linker

    def _config_get(self, _store: Any, key: str) -> str | None:
        """The call's own keys (a raw-ABI call's ``arcana.*``) first, then the plugin's config."""
        instance: ComponentInstance | None = getattr(_CURRENT, "instance", None)
        context = None if instance is None else instance.context
        if context is not None and context.call_config is not None and key in context.call_config:
            return context.call_config[key]
        return self._config.get(key)

    def instantiate(self) -> ComponentInstance:
        with self._lock:  # the linker is shared by every instance of this component
            return ComponentInstance(self)

    def inline_twin(self, max_ms: int) -> ComponentCompiled:
        # Components never run inline: the loader's inline rule leaves them out (their calls are
        # costlier than the inline budget, and a store cannot be stopped from the watchdog's thread).
        return self


def _tick(engine: weakref.ref[wasmtime.Engine]) -> None:
    """Advance the epoch every tick while the engine lives (its compiled components and stores hold it)."""
    while (alive := engine()) is not None:
        alive.increment_epoch()
        del alive  # no strong reference while asleep: the engine may go
        time.sleep(TICK_MS / 1000)


def _adapt(fn: LinkedFunction) -> Callable[[Any, str], str]:
    """``fn`` as a WIT ``func(request: string) -> string``: errors are values, nothing raises into the engine."""

    def host(_store: Any, request: str) -> str:
        instance: ComponentInstance | None = getattr(_CURRENT, "instance", None)
        if instance is None or instance.context is None:
            return _error_reply("INTERNAL", "host function called outside a plugin call")
        if instance.cancelled:
            # A WasmtimeError is the one exception the binding turns into a trap without keeping
            # it in a process-wide slot that another thread's call could pick up.
            raise wasmtime.WasmtimeError("arcana: call cancelled")
        try:
            reply = fn.call(instance.context, request.encode("utf-8"))
            return reply.decode("utf-8", "replace")
        except Exception:  # LinkedFunction.call never raises; this guards the engine if one does
            logger.exception("host call failed for %s", fn.name)
            return _error_reply("INTERNAL", "the host function failed")

    return host


class ComponentEngine:
    """Compiles components (through the artifact cache when given) and makes their instances."""

    def __init__(self, cache: ArtifactCache | None = None) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True
        config.cranelift_opt_level = "speed"
        self.engine = wasmtime.Engine(config)
        self.cache = cache
        self._inspected: OrderedDict[str, wc.Component] = OrderedDict()
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None
        # Compiles and cached loads since start (tests and the closing figures read them).
        self.compiled = 0
        self.deserialized = 0

    @staticmethod
    def fingerprint() -> str:
        """What a compiled artifact depends on besides the component's bytes."""
        version = importlib.metadata.version("wasmtime")
        return f"wasmtime {version}; {platform.machine()}; epoch_interruption; opt speed"

    def _start_ticker(self) -> None:
        with self._lock:
            if self._ticker is None:
                ref = weakref.ref(self.engine)
                self._ticker = threading.Thread(target=_tick, args=(ref,), name="arcana-epoch", daemon=True)
                self._ticker.start()

    def _component(self, wasm: bytes) -> wc.Component:
        sha256 = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            found = self._inspected.pop(sha256, None)
        if found is not None:
            return found
        if self.cache is not None:
            cached = self.cache.load(sha256, self._deserialize)
            if cached is not None:
                self.deserialized += 1
                return cached
        try:
            component = wc.Component(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleRejected(f"not a valid WebAssembly component: {str(exc).splitlines()[0]}") from exc
        self.compiled += 1
        if self.cache is not None:
            self.cache.store(sha256, bytes(component.serialize()))
        return component

    def _deserialize(self, body: bytes) -> wc.Component:
        try:
            return wc.Component.deserialize(self.engine, body)
        except wasmtime.WasmtimeError as exc:
            raise ValueError(str(exc)) from exc

    def inspect(self, wasm: bytes) -> ModuleInfo:
        """Imports as (HOST_NAMESPACE, host function) pairs; anything not offered goes to ``foreign``.

        Reading a component's types needs it compiled (or loaded from the cache): it is kept for ``compile``.
        """
        component = self._component(wasm)
        with self._lock:
            self._inspected[hashlib.sha256(wasm).hexdigest()] = component
            while len(self._inspected) > INSPECTED_KEEP:
                self._inspected.popitem(last=False)
        imports: list[tuple[str, str]] = []
        foreign: list[str] = []
        for name, item in component.type.imports(self.engine).items():
            iface = interface_name(name)
            ty = item.ty
            if iface is None or not isinstance(ty, wc.ComponentInstanceType):
                foreign.append(name)
            elif iface not in ENGINE_INTERFACES:
                imports += [(HOST_NAMESPACE, fn.replace("-", "_")) for fn in ty.exports(self.engine)]
        # A component's exports are typed by WIT, not core signatures: names are what the loader checks.
        exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
            name: ((), ()) for name in component.type.exports(self.engine)
        }
        return ModuleInfo(tuple(imports), exports, component=True, foreign=tuple(foreign))

    def compile(
        self,
        wasm: bytes,
        functions: Sequence[LinkedFunction],
        *,
        memory_mb: int,
        timeout_ms: int,
        config: Mapping[str, str] | None = None,
    ) -> ComponentCompiled:
        component = self._component(wasm)
        imported = {}
        for name, item in component.type.imports(self.engine).items():
            iface, ty = interface_name(name), item.ty
            if iface is not None and isinstance(ty, wc.ComponentInstanceType):
                imported[iface] = list(ty.exports(self.engine))
        self._start_ticker()
        try:
            return ComponentCompiled(self.engine, component, functions, memory_mb, timeout_ms, config or {}, imported)
        except wasmtime.WasmtimeError as exc:
            raise ModuleRejected(f"cannot link: {str(exc).splitlines()[0]}") from exc
