"""A fake engine behind ``arcana.engine.Engine``, and plugin files it can serve: the core tested in process.

Plugins are defined in Python: a ``FakePlugin`` maps handler names to
functions ``(input, context) -> output``. ``input`` is the envelope parsed as
JSON when the bytes are JSON, else the raw bytes; ``output`` is a dict (sent
as JSON), ``bytes`` or ``str``. A handler can call the host functions its
module was linked with through ``host(name, request)``, and the behaviours
``trap``, ``oom``, ``spin`` (runs until the engine's own limit or a cancel)
and ``Gate`` (blocks like a stuck host function, ignoring both) make faults
on demand. ``write_plugin`` writes a tiny but valid .wasm (the header plus
custom sections) so the real loader reads a real manifest; the engine finds
the behaviour by the manifest's plugin name (or a ``fake.key`` section).
The model is httpx's MockTransport and Spin's factors-test: the real kernel,
only the guest replaced.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import shutil
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from google.protobuf import descriptor_pb2

from arcana.config import load_config
from arcana.engine import ModuleInfo
from arcana.errors import GuestFault, ModuleRejected
from arcana.kernel import Kernel
from arcana.tracing import Tracing
from arcana.types import HOST_NAMESPACE, CallContext, LinkedFunction
from arcana_sdk.wasm_sections import (
    DESCRIPTORS_SECTION,
    MANIFEST_SECTION,
    append_custom_section,
    read_custom_section,
)

WASM_HEADER = b"\x00asm\x01\x00\x00\x00"
# The section that names a fake definition when the manifest's plugin name should not (two builds of one plugin).
KEY_SECTION = "fake.key"
# A section whose only job is to change the module's bytes (a rebuild with the same manifest).
BUILD_SECTION = "fake.build"
# The export signature of an Extism handler, as wasmtime reports it.
HANDLER_SIGNATURE: tuple[tuple[str, ...], tuple[str, ...]] = ((), ("i32",))
# The HS256 secret in-process kernels verify with (ARCANA_JWT_SECRET); at least 32 bytes.
TEST_SECRET = "arcana-inprocess-secret-0123456789-abcdef"

Handler = Callable[[Any, CallContext], Any]


class FakeMisuse(Exception):
    """A fake plugin did something no real module could (a test bug, not a kernel one)."""


# ---------------------------------------------------------------- definitions


@dataclass
class Call:
    """One guest call as the fake saw it."""

    handler: str
    data: bytes
    input: Any
    context: CallContext
    instance: int


@dataclass
class FakePlugin:
    """The behaviour of one plugin: handlers by export name, the host functions it imports, counters."""

    handlers: dict[str, Handler]
    # Host functions the module imports (namespace extism:host/user); the loader checks them against grants.
    imports: tuple[str, ...] = ()
    # Exports beyond the handlers, with their signatures (e.g. a handler with the wrong ABI).
    extra_exports: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = field(default_factory=dict)
    # Knobs for modules the engine refuses: at inspect, at compile, at instantiation.
    reject_inspect: str | None = None
    reject_compile: str | None = None
    reject_instantiate: str | None = None
    # What the guest saw and counters, written from the worker threads (list.append is atomic; counts use count()).
    calls: list[Call] = field(default_factory=list)
    compiles: int = 0
    instances: int = 0
    cancels: int = 0
    finished: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def info(self) -> ModuleInfo:
        exports = {name: HANDLER_SIGNATURE for name in self.handlers} | self.extra_exports
        return ModuleInfo(tuple((HOST_NAMESPACE, name) for name in self.imports), exports)

    def count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)


# ---------------------------------------------------------------- behaviours


@dataclass
class _Running:
    instance: FakeInstance
    context: CallContext


_current = threading.local()


def current() -> _Running:
    """The call running on this thread (only inside a handler)."""
    running: _Running | None = getattr(_current, "call", None)
    if running is None:
        raise FakeMisuse("host() and the fault behaviours work only inside a fake handler")
    return running


def host(name: str, request: Mapping[str, Any] | bytes) -> Any:
    """Call the linked host function ``name`` from inside a handler; the reply parsed as JSON."""
    running = current()
    compiled = running.instance.compiled
    if name not in compiled.plugin.imports:
        raise FakeMisuse(f"the fake plugin calls {name} without importing it")
    fn = compiled.functions.get(name)
    if fn is None:
        raise FakeMisuse(f"{name} is imported but was not linked (compile would have refused the module)")
    data = request if isinstance(request, bytes) else json.dumps(request).encode()
    return json.loads(fn.call(running.context, data))


def reply(output: Any) -> Handler:
    """A handler that always answers ``output``."""
    return lambda _input, _context: output


def trap(detail: str = "wasm `unreachable` instruction executed") -> Handler:
    def handler(_input: Any, _context: CallContext) -> Any:
        raise GuestFault("trap", detail)

    return handler


def oom() -> Handler:
    def handler(_input: Any, _context: CallContext) -> Any:
        raise GuestFault("oom", "the plugin ran out of its memory limit")

    return handler


def spin() -> Handler:
    """A guest loop: ends only at the engine's own time limit (timeout) or a cancel (cancelled)."""

    def handler(_input: Any, _context: CallContext) -> Any:
        instance = current().instance
        if instance.cancelled.wait(instance.compiled.timeout_ms / 1000):
            raise GuestFault("cancelled", "the call was cancelled")
        raise GuestFault("timeout", "the call ran past its time limit")

    return handler


class Gate:
    """A handler that blocks until released, deaf to cancels and to the engine's limit (a stuck host call)."""

    def __init__(self, output: Any = None) -> None:
        self.output = {"status": 200, "body": {"gate": "passed"}} if output is None else output
        self.entered = threading.Semaphore(0)
        self.inside = 0
        # The most calls ever inside at once (what a bulkhead bounds).
        self.most_inside = 0
        self._open = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, _input: Any, _context: CallContext) -> Any:
        with self._lock:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
        self.entered.release()
        try:
            if not self._open.wait(30):
                raise FakeMisuse("a Gate was never released")
            return self.output
        finally:
            with self._lock:
                self.inside -= 1

    def wait_entered(self, count: int = 1, timeout: float = 5.0) -> None:
        for _ in range(count):
            if not self.entered.acquire(timeout=timeout):
                raise AssertionError("the gated handler was not entered in time")

    def release(self) -> None:
        self._open.set()


# ---------------------------------------------------------------- the engine


class FakeInstance:
    _ids = itertools.count(1)

    def __init__(self, compiled: FakeCompiled) -> None:
        self.compiled = compiled
        self.id = next(self._ids)
        # Sticky like a cancel handle on a dead call: a reused cancelled instance would fail its next call.
        self.cancelled = threading.Event()

    def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        plugin = self.compiled.plugin
        fn = plugin.handlers.get(handler)
        if fn is None:
            raise GuestFault("trap", f"no export named {handler}")
        if self.cancelled.is_set():
            raise GuestFault("cancelled", "the call was cancelled")
        decoded = _decode(data)
        plugin.calls.append(Call(handler, data, decoded, context, self.id))
        _current.call = _Running(self, context)
        try:
            return _encode(fn(decoded, context))
        finally:
            _current.call = None
            plugin.count("finished")

    def cancel(self) -> None:
        self.cancelled.set()
        self.compiled.plugin.count("cancels")


@dataclass
class FakeCompiled:
    plugin: FakePlugin
    functions: dict[str, LinkedFunction]
    memory_mb: int
    timeout_ms: int
    # The plugin's config as the loader merged it (a handler sees the call's own in context.call_config).
    config: dict[str, str] = field(default_factory=dict)

    def inline_twin(self, max_ms: int) -> FakeCompiled:
        """The twin's budget is a plain time limit here (``spin`` and friends wait on it)."""
        self.plugin.count("compiles")
        return FakeCompiled(self.plugin, self.functions, self.memory_mb, max_ms, self.config)

    def instantiate(self) -> FakeInstance:
        if self.plugin.reject_instantiate is not None:
            raise ModuleRejected(f"cannot instantiate: {self.plugin.reject_instantiate}")
        self.plugin.count("instances")
        return FakeInstance(self)


class FakeEngine:
    """The Engine protocol over Python definitions, found by the module's manifest name or ``fake.key``."""

    def __init__(self, plugins: Mapping[str, FakePlugin] | None = None) -> None:
        self.plugins: dict[str, FakePlugin] = dict(plugins or {})
        # Every module compiled, in order (what the loader handed the engine).
        self.compiled: list[FakeCompiled] = []

    def define(self, key: str, plugin: FakePlugin) -> FakePlugin:
        """Set the behaviour for ``key``; modules compiled before keep the definition they were compiled with."""
        self.plugins[key] = plugin
        return plugin

    def plugin_for(self, wasm: bytes) -> FakePlugin:
        key = key_of(wasm)
        found = self.plugins.get(key or "")
        if found is None:
            raise ModuleRejected(f"not a valid WebAssembly module: no fake plugin is defined for {key!r}")
        return found

    def inspect(self, wasm: bytes) -> ModuleInfo:
        plugin = self.plugin_for(wasm)
        if plugin.reject_inspect is not None:
            raise ModuleRejected(plugin.reject_inspect)
        return plugin.info()

    def compile(
        self,
        wasm: bytes,
        functions: Sequence[LinkedFunction],
        *,
        memory_mb: int,
        timeout_ms: int,
        config: Mapping[str, str] | None = None,
    ) -> FakeCompiled:
        plugin = self.plugin_for(wasm)
        plugin.count("compiles")
        if plugin.reject_compile is not None:
            raise ModuleRejected(f"cannot compile: {plugin.reject_compile}")
        linked = {fn.name: fn for fn in functions}
        unresolved = sorted(set(plugin.imports) - set(linked))
        if unresolved:  # as Extism: an import without a definition fails the module
            raise ModuleRejected(f"cannot compile: unknown import {HOST_NAMESPACE}::{unresolved[0]}")
        compiled = FakeCompiled(plugin, linked, memory_mb, timeout_ms, dict(config or {}))
        self.compiled.append(compiled)
        return compiled


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data


def _encode(output: Any) -> bytes:
    if isinstance(output, bytes):
        return output
    if isinstance(output, str):
        return output.encode()
    return json.dumps(output).encode()


# ---------------------------------------------------------------- plugin files


def key_of(wasm: bytes) -> str | None:
    """The fake definition a module names: its ``fake.key`` section, else its manifest's plugin name."""
    key = read_custom_section(wasm, KEY_SECTION)
    if key is not None:
        return key.decode()
    manifest = read_custom_section(wasm, MANIFEST_SECTION)
    if manifest is None:
        return None
    try:
        name = tomllib.loads(manifest.decode()).get("plugin", {}).get("name")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    return name if isinstance(name, str) else None


def wasm_bytes(
    manifest: str | None, *, descriptors: bytes | None = None, key: str | None = None, build: str = ""
) -> bytes:
    """A tiny valid module: the 8-byte header and custom sections only."""
    wasm = WASM_HEADER
    if manifest is not None:
        wasm = append_custom_section(wasm, MANIFEST_SECTION, manifest.encode())
    if descriptors is not None:
        wasm = append_custom_section(wasm, DESCRIPTORS_SECTION, descriptors)
    if key is not None:
        wasm = append_custom_section(wasm, KEY_SECTION, key.encode())
    if build:
        wasm = append_custom_section(wasm, BUILD_SECTION, build.encode())
    return wasm


def write_plugin(
    folder: Path,
    manifest: str | None,
    *,
    file: str | None = None,
    descriptors: bytes | None = None,
    key: str | None = None,
    build: str = "",
) -> Path:
    """Write a fake plugin module atomically into ``folder`` (named after the plugin unless ``file``)."""
    name = file or key or (tomllib.loads(manifest)["plugin"]["name"] if manifest else "plugin")
    target = folder / f"{name}.wasm"
    tmp = folder / f".{target.name}.part"
    tmp.write_bytes(wasm_bytes(manifest, descriptors=descriptors, key=key, build=build))
    os.replace(tmp, target)
    return target


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def _table(header: str, values: Mapping[str, Any]) -> str:
    return "\n".join([header, *(f"{json.dumps(k)} = {_toml(v)}" for k, v in values.items())]) + "\n"


def manifest_toml(
    name: str,
    version: str = "1.0.0",
    *,
    routes: Iterable[Mapping[str, Any]] = (),
    grpc: Iterable[Mapping[str, Any]] = (),
    limits: Mapping[str, int] | None = None,
    capabilities: Mapping[str, Any] | None = None,
) -> str:
    """Manifest TOML from plain values, e.g. ``routes=[{"method": "GET", "path": "/x", "handler": "x"}]``."""
    parts = [_table("[plugin]", {"name": name, "version": version})]
    if capabilities:
        parts.append(_table("[capabilities]", capabilities))
    if limits:
        parts.append(_table("[limits]", limits))
    parts += [_table("[[route]]", r) for r in routes]
    parts += [_table("[[grpc]]", g) for g in grpc]
    return "\n".join(parts)


def route(method: str, path: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {"method": method, "path": path, "handler": handler, **extra}


# ---------------------------------------------------------------- descriptors


def greeter_descriptors(counted_extra: str | None = None) -> bytes:
    """A FileDescriptorSet for ``fake.v1``: Greeter.Say and Greeter.Count (Named -> Counted) and a streaming Watch.

    ``counted_extra`` adds a string field of that name to Counted (a changed .proto).
    """
    file = descriptor_pb2.FileDescriptorProto(name="fake/v1/greeter.proto", package="fake.v1", syntax="proto3")
    string, int32 = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_INT32
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    named = file.message_type.add(name="Named")
    named.field.add(name="name", number=1, type=string, label=optional, json_name="name")
    counted = file.message_type.add(name="Counted")
    counted.field.add(name="count", number=1, type=int32, label=optional, json_name="count")
    if counted_extra:
        counted.field.add(name=counted_extra, number=2, type=string, label=optional, json_name=counted_extra)
    service = file.service.add(name="Greeter")
    service.method.add(name="Say", input_type=".fake.v1.Named", output_type=".fake.v1.Counted")
    service.method.add(name="Count", input_type=".fake.v1.Named", output_type=".fake.v1.Counted")
    service.method.add(name="Watch", input_type=".fake.v1.Named", output_type=".fake.v1.Counted", server_streaming=True)
    return descriptor_pb2.FileDescriptorSet(file=[file]).SerializeToString()


# ---------------------------------------------------------------- kernels


class Kernels:
    """Makes started kernels on the test's fake engine, serving ``plugins``; closes them at teardown."""

    def __init__(self, tmp_path: Path, engine: FakeEngine, template: Path) -> None:
        self.engine = engine
        self.plugins = tmp_path / "plugins"
        self.plugins.mkdir()
        self._tmp = tmp_path
        self._template = template
        self._made: list[Kernel] = []

    def __call__(self, tracing: Tracing | None = None, **settings: str) -> Kernel:
        """A started kernel; ``settings`` are config overrides as env keys, e.g. ``SERVER__MAX_BODY_BYTES="64"``.

        ``tracing``: spans through the test's provider (an in-memory exporter), else as configured.
        """
        db = self._tmp / f"kernel-{len(self._made)}.db"
        shutil.copyfile(self._template, db)
        environ = {
            "ARCANA_DATABASE__URL": f"sqlite:///{db}",
            "ARCANA_PLUGINS__DIR": str(self.plugins),
            "ARCANA_EXECUTOR__THREADS": "4",
            # Cheap Argon2: identity hashes a dummy password at start-up (33 ms at the default cost).
            "ARCANA_AUTH__ARGON2_TIME_COST": "1",
            "ARCANA_AUTH__ARGON2_MEMORY_KIB": "1024",
            **{f"ARCANA_{key}": value for key, value in settings.items()},
        }
        kernel = Kernel(load_config(None, environ=environ), engine=self.engine, tracing=tracing)
        self._made.append(kernel)
        kernel.start()
        return kernel

    def close(self) -> None:
        for kernel in self._made:
            kernel.close()


# ---------------------------------------------------------------- tokens and waiting


# (caller's x-request-id, kept?): the one request id rule, checked alike on every edge.
REQUEST_ID_CASES: list[tuple[str, bool]] = [
    ("abc-123", True),
    ("a.b_c:d-e", True),
    ("x" * 128, True),
    ("x" * 129, False),
    ("", False),
    ("has space", False),
    ("semi;colon", False),
    ("caf\u00e9", False),
]


# A day: tokens minted when a test module is collected must outlive the whole suite.
TOKEN_TTL_S = 86_400


def mint(sub: str = "u-test", roles: Sequence[str] = (), secret: str = TEST_SECRET, ttl: int = TOKEN_TTL_S) -> str:
    """An HS256 access token as the kernel's own issuer would sign it."""
    now = int(time.time())
    claims = {"sub": sub, "roles": list(roles), "iat": now, "exp": now + ttl, "jti": f"j-{now}-{sub}"}
    return jwt.encode({**claims, "iss": "arcana", "aud": "arcana"}, secret, algorithm="HS256")


def bearer(sub: str = "u-test", roles: Sequence[str] = ()) -> dict[str, str]:
    return {"authorization": f"Bearer {mint(sub, roles)}"}


def wait_for(predicate: Callable[[], object], timeout: float, message: str) -> None:
    """Poll ``predicate`` until it is true; fail with ``message`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        time.sleep(0.005)


async def async_wait_for(predicate: Callable[[], object], timeout: float, message: str) -> None:
    """``wait_for`` without blocking the event loop."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s: {message}")
        await asyncio.sleep(0.005)


async def entered(gate: Gate, count: int = 1) -> None:
    """Wait, off the event loop, until ``count`` calls are inside ``gate``."""
    await asyncio.to_thread(gate.wait_entered, count)
