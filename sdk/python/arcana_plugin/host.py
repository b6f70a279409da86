"""Typed bindings of the host functions (docs/host-abi.md), errors as values.

Every call answers a :class:`Result`: ``.value`` on success, ``.error`` (a
:class:`HostError` with the error model's ``code`` and ``message``) on
failure; none of them raises. ``.unwrap()`` is the short way to pass an error
on: it answers the value or raises :class:`~arcana_plugin.Fail` with the
host's code, so the client gets that code (the other SDKs' ``failWith``)::

    doc = store.get("bookmarks", id).unwrap()       # NOT_FOUND reaches the client as 404
    found = store.get("bookmarks", id)
    if found.error and found.error.code == Code.NOT_FOUND: ...

The functions come from the bindings componentize-py generates for the
plugin's own world (``wit_world.imports.<interface>``), one interface per
grant. They are looked up when first called, so a plugin whose manifest does
not request a grant still builds and runs; calling a function of a grant it
did not request answers ``FORBIDDEN`` naming the grant to add. ``clock``,
``random`` and ``config`` need no grant and are in every world.
"""

from __future__ import annotations

import base64
import importlib
import io
import json
import sys
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Generic, NoReturn, TypeVar

from .contract import HOST_FUNCTIONS, Code
from .responses import Fail

__all__ = [
    "HostError",
    "Result",
    "auth",
    "clock",
    "config",
    "events",
    "http",
    "kv",
    "log",
    "queue",
    "random",
    "store",
]

T = TypeVar("T")
_BINDINGS = "wit_world.imports"


@dataclass(frozen=True)
class HostError:
    """A host function's error: ``code`` (one of :class:`~arcana_plugin.Code`), ``message`` and any extra fields."""

    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self) -> NoReturn:
        """Answer the request with this error (same code, same message)."""
        raise Fail(self.code, self.message)


@dataclass(frozen=True)
class Result(Generic[T]):
    """A host call's outcome: exactly one of ``value`` (success) and ``error``."""

    value: T | None = None
    error: HostError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self) -> T:
        """The value; an error is raised as :class:`Fail` with its own code (the client gets it)."""
        if self.error is not None:
            self.error.fail()
        return self.value  # type: ignore[return-value]

    def map(self, fn: Any) -> Result[Any]:
        return self if self.error is not None else Result(fn(self.value))


def _err(code: str, message: str, details: dict[str, Any] | None = None) -> Result[Any]:
    return Result(error=HostError(code, message, details or {}))


# Interface -> its bindings, or None when the world does not import it. Filled by preload() while the
# build snapshots the app: a component built with stubbed WASI cannot import at run time (an import
# stats the file system, which traps), so nothing here may import after the snapshot.
_modules: dict[str, ModuleType | None] = {}


def _interface(name: str) -> ModuleType | None:
    """The generated bindings of interface ``name`` (``auth-issue`` is module ``auth_issue``), or None."""
    if name not in _modules:
        try:
            _modules[name] = importlib.import_module(f"{_BINDINGS}.{name.replace('-', '_').replace('.', '_')}")
        except ImportError:
            _modules[name] = None
    return _modules[name]


def call(function: str, request: dict[str, Any]) -> Result[dict[str, Any]]:
    """Call host function ``function`` (a name of the catalogue) with ``request``; its reply object or its error."""
    grant = HOST_FUNCTIONS.get(function)
    if grant is None:
        return _err(Code.INTERNAL, f"{function!r} is not a host function of Arcana")
    module = _interface(grant)
    if module is None:
        return _err(
            Code.FORBIDDEN,
            f"{function} needs the grant {grant!r}: request it in plugin.toml [capabilities] and rebuild",
        )
    try:
        raw = getattr(module, function)(json.dumps(request, separators=(",", ":")))
        reply = json.loads(raw)
    except (TypeError, ValueError):
        # An unserialisable request is the plugin's bug, an unreadable reply the host's: neither is success.
        return _err(Code.INTERNAL, "host call failed")
    if not isinstance(reply, dict):
        return _err(Code.INTERNAL, "host call failed")
    error = reply.get("error")
    if isinstance(error, dict):
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        details |= {k: v for k, v in reply.items() if k != "error"}
        return _err(str(error.get("code", Code.INTERNAL)), str(error.get("message", "")), details)
    return Result(reply)


def _field(result: Result[dict[str, Any]], name: str) -> Result[Any]:
    return result if result.error is not None else Result((result.value or {}).get(name))


def _done(result: Result[dict[str, Any]]) -> Result[None]:
    """Success without a value, or the error."""
    return Result(error=result.error) if result.error is not None else Result(None)


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class _Log:
    """``log`` grant: one line in the kernel's log with the plugin, version and request id. Never fails the call."""

    def log(self, level: str, message: str, **fields: Any) -> None:
        request: dict[str, Any] = {"level": level, "message": message}
        if fields:
            request["fields"] = fields
        call("log", request)  # log alone ignores its reply (docs/host-abi.md)

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.log("warn", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)


class _Store:
    """``store`` grant: the plugin's own document collections. A doc is the body plus id, version, timestamps."""

    def get(self, collection: str, id: str) -> Result[dict[str, Any]]:
        return _field(call("store_get", {"collection": collection, "id": id}), "doc")

    def put(
        self,
        collection: str,
        doc: dict[str, Any],
        *,
        id: str | None = None,
        expected_version: int | None = None,
    ) -> Result[dict[str, Any]]:
        """Create or replace; ``expected_version=0`` creates only, another version checks it (CONFLICT)."""
        request = _drop_none(collection=collection, id=id, doc=doc, expected_version=expected_version)
        return _field(call("store_put", request), "doc")

    def delete(self, collection: str, id: str, *, expected_version: int | None = None) -> Result[bool]:
        request = _drop_none(collection=collection, id=id, expected_version=expected_version)
        return _field(call("store_delete", request), "deleted")

    def query(
        self,
        collection: str,
        *,
        filter: dict[str, Any] | None = None,
        sort: str | None = None,
        order: str | None = None,
        page: int | None = None,
        size: int | None = None,
    ) -> Result[dict[str, Any]]:
        """``{items, total, page, size}``."""
        request = _drop_none(collection=collection, filter=filter, sort=sort, order=order, page=page, size=size)
        return call("store_query", request)

    def batch(self, ops: list[dict[str, Any]]) -> Result[list[dict[str, Any]]]:
        """All or nothing: ``[{"op": "put"|"delete", ...}]`` -> one result per op."""
        return _field(call("store_batch", {"ops": ops}), "results")


class _Kv:
    """``store`` grant: the plugin's own keys."""

    def get(self, key: str) -> Result[Any]:
        """The value, or ``None`` when the key is absent."""
        result = call("kv_get", {"key": key})
        if result.error is not None:
            return result
        reply = result.value or {}
        return Result(reply.get("value") if reply.get("found") else None)

    def set(self, key: str, value: Any, *, ttl: int | None = None) -> Result[None]:
        return _done(call("kv_set", _drop_none(key=key, value=value, ttl=ttl)))

    def delete(self, key: str) -> Result[bool]:
        return _field(call("kv_delete", {"key": key}), "deleted")

    def incr(self, key: str, by: int = 1) -> Result[int]:
        return _field(call("kv_incr", {"key": key, "by": by}), "value")


class _Auth:
    """``auth`` grant (and ``auth.issue`` for :meth:`issue_token`). The kernel's secrets never reach the plugin."""

    def hash_password(self, password: str) -> Result[str]:
        return _field(call("auth_hash_password", {"password": password}), "hash")

    def verify_password(self, password: str, hash: str) -> Result[bool]:
        return _field(call("auth_verify_password", {"password": password, "hash": hash}), "valid")

    def check_role(self, role: str) -> Result[bool]:
        """Whether the calling request's principal has ``role``."""
        return _field(call("auth_check_role", {"role": role}), "has_role")

    def issue_token(self, sub: str, roles: list[str], *, ttl_s: int | None = None) -> Result[dict[str, Any]]:
        """``{access_token, expires_in}`` (grant ``auth.issue``; ``ttl_s`` at most 3600)."""
        return call("auth_issue_token", _drop_none(sub=sub, roles=list(roles), ttl_s=ttl_s))


class _Queue:
    """``queue`` grant: background jobs of the plugin's own ``[[job]]`` types (or ones the operator grants)."""

    def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        delay_ms: int | None = None,
        max_retries: int | None = None,
        dedupe_key: str | None = None,
    ) -> Result[dict[str, Any]]:
        """``{id, created}``."""
        request = _drop_none(
            type=type,
            payload=payload,
            priority=priority,
            delay_ms=delay_ms,
            max_retries=max_retries,
            dedupe_key=dedupe_key,
        )
        return call("queue_enqueue", request)

    def status(self, id: str) -> Result[dict[str, Any]]:
        return _field(call("queue_status", {"id": id}), "job")


class _Events:
    """``events`` grant: topics matching the manifest's ``events`` patterns."""

    def emit(self, topic: str, payload: dict[str, Any] | None = None) -> Result[None]:
        return _done(call("event_emit", _drop_none(topic=topic, payload=payload)))


class _Http:
    """``http`` grant: outbound requests to the granted hosts only."""

    def fetch(
        self,
        url: str,
        *,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        data: bytes | None = None,
        timeout_ms: int | None = None,
    ) -> Result[dict[str, Any]]:
        """``{status, headers, body|body_base64, truncated, url}``; any status the server answers is a value."""
        request = _drop_none(url=url, method=method, headers=headers, body=body, timeout_ms=timeout_ms)
        if data is not None:
            request["body_base64"] = base64.b64encode(data).decode("ascii")
        return call("http_fetch", request)


def _required(name: str) -> ModuleType:
    module = _interface(name)
    if module is None:
        # Every world a build generates imports it: only code run outside a component gets here.
        raise RuntimeError(f"the {name} interface is not imported: build the plugin with `arcana plugin build`")
    return module


class _Clock:
    """Host time (a component built with stubbed WASI has no clock; ``time.time()`` traps)."""

    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch."""
        return int(_required("clock").now_ms())

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        return self.now_ms() / 1000.0

    def monotonic_ns(self) -> int:
        """Nanoseconds from an arbitrary start, never going back."""
        return int(_required("clock").monotonic_ns())


class _Random:
    """The host's CSPRNG (a stubbed-WASI build's own ``random``/``os.urandom`` seed is fixed at build time)."""

    MAX = 65536

    def bytes(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            out += bytes(_required("random").random_bytes(min(self.MAX, n - len(out))))
        return bytes(out)

    def token_hex(self, n: int = 16) -> str:
        return self.bytes(n).hex()


class _Config:
    """The plugin's ``[config]`` (operator overrides applied) and, in raw-ABI calls, the ``arcana.*`` keys."""

    def get(self, key: str, default: str | None = None) -> str | None:
        value = _required("config").config_get(key)
        return default if value is None else str(value)


log = _Log()
store = _Store()
kv = _Kv()
auth = _Auth()
queue = _Queue()
events = _Events()
http = _Http()
clock = _Clock()
random = _Random()
config = _Config()


class _LogStream(io.TextIOBase):
    """A text stream whose lines go to ``log`` (nowhere without the grant): stdout of a stubbed-WASI build traps."""

    def __init__(self, level: str) -> None:
        self._level = level
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            log.log(self._level, line)
        return len(text)

    def flush(self) -> None:
        if self._pending:
            line, self._pending = self._pending, ""
            log.log(self._level, line)


def redirect_stdio() -> None:
    """``print`` (stdout) and stderr go to ``log`` at info and warn: in a component they would trap."""
    sys.stdout = _LogStream("info")
    sys.stderr = _LogStream("warn")


def preload() -> None:
    """Look up every interface once, so the build's snapshot holds the answers (componentize-py pre-init).

    Called again (tests do, after putting fake bindings in ``sys.modules``) it looks them up afresh.
    """
    _modules.clear()
    for grant in sorted({*HOST_FUNCTIONS.values(), "clock", "random", "config"}):
        _interface(grant)
