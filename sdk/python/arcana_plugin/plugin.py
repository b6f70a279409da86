"""The registry and dispatcher: what the component's ``handle(handler, input)`` runs.

::

    from arcana_plugin import Plugin, created

    app = Plugin()

    @app.route("GET", "/api/v1/bookmarks/{id}")
    def get_bookmark(req): ...

Each registration has a handler NAME: the one the manifest's ``[[route]]``,
``[[grpc]]``, ``[[job]]`` or ``[[subscribe]]`` gives as ``handler`` (the
function's name unless ``name=`` says otherwise). Several registrations may
share a name: ``handle`` then picks by the envelope, the route's method and
template, the gRPC method, the job type or the event topic. ``handlers()``
answers every name, and the kernel checks the manifest against it at load.

``Plugin()`` also defines ``WitWorld`` (the class componentize-py exports) in
the module that creates it, so ``app.py`` needs nothing else; a second
``Plugin()`` in the same module leaves the first one's in place.
"""

from __future__ import annotations

import json
import random as _stdlib_random
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from . import host
from .contract import Code
from .envelopes import Envelope, EventRequest, GrpcRequest, HttpRequest, JobRequest, parse
from .responses import Fail, Response, error_answer, no_content

__all__ = ["Plugin"]

F = TypeVar("F", bound=Callable[..., Any])
_JSON = (",", ":")
# Inside a component (CPython built for WASI), not in a CPython test of the SDK.
IN_COMPONENT = sys.platform == "wasi"


@dataclass(frozen=True)
class _Entry:
    """One registration: ``kind`` is http, grpc, job, event, any (@handler) or raw; ``key`` what it matches."""

    name: str
    kind: str
    key: tuple[str, ...]
    fn: Callable[..., Any]


def _topic_pattern(pattern: str) -> re.Pattern[str]:
    # As the kernel matches [[subscribe]] topics: `*` matches anything, the rest is literal.
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


class Plugin:
    """The handlers of one plugin, and the dispatcher the component export calls."""

    def __init__(self, *, export: bool = True) -> None:
        self._entries: dict[str, list[_Entry]] = {}
        self._seeded = False
        if export:
            # The module being imported (the author's app.py) gets `WitWorld`, what componentize-py looks up.
            caller = sys._getframe(1).f_globals
            caller.setdefault("WitWorld", self.world_class())

    # ------------------------------------------------------------ registration

    def _add(self, name: str | None, kind: str, key: tuple[str, ...]) -> Callable[[F], F]:
        def register(fn: F) -> F:
            entry = _Entry(name or fn.__name__, kind, key, fn)
            taken = self._entries.setdefault(entry.name, [])
            if any(e.kind == kind and e.key == key for e in taken):
                raise ValueError(f"handler {entry.name!r} registers {kind} {' '.join(key) or '(any)'} twice")
            taken.append(entry)
            return fn

        return register

    def route(self, method: str, path: str, *, name: str | None = None) -> Callable[[F], F]:
        """An HTTP route: ``fn(req: HttpRequest)`` for ``method`` and the manifest's ``path`` template."""
        return self._add(name, "http", (method.upper(), path))

    def grpc(self, method: str, *, name: str | None = None) -> Callable[[F], F]:
        """A gRPC method ``package.Service/Method``: ``fn(req: GrpcRequest)`` answers the reply message (a dict)."""
        return self._add(name, "grpc", (method,))

    def job(self, type: str, *, name: str | None = None) -> Callable[[F], F]:
        """A ``[[job]]`` type: ``fn(req: JobRequest)`` answers the job's result (any JSON, or None)."""
        return self._add(name, "job", (type,))

    def subscribe(self, topic: str, *, name: str | None = None) -> Callable[[F], F]:
        """A ``[[subscribe]]`` topic pattern (``note.*``): ``fn(req: EventRequest)``."""
        return self._add(name, "event", (topic,))

    def handler(self, name: str) -> Callable[[F], F]:
        """The handler ``name`` for any envelope: ``fn(req)`` gets whichever request arrives."""
        return self._add(name, "any", ())

    def raw(self, name: str) -> Callable[[F], F]:
        """An ``abi = "raw"`` handler: ``fn(body: bytes)`` answers bytes or str; read the call through ``config``."""
        return self._add(name, "raw", ())

    # ------------------------------------------------------------ dispatch

    def handlers(self) -> list[str]:
        return sorted(self._entries)

    def handle(self, name: str, data: bytes) -> bytes:
        """Run handler ``name`` on the kernel's input; the kernel's answer. Only :class:`Fail` becomes an answer:
        any other exception propagates, so the component traps (PLUGIN_FAILED, the instance is discarded)."""
        if IN_COMPONENT and not self._seeded:
            # Every instance starts from the build's snapshot, whose `random` seed was fixed at build time:
            # reseed it from the host's CSPRNG once per instance, so instances do not repeat one sequence.
            _stdlib_random.seed(host.random.bytes(32))
            self._seeded = True
        entries = self._entries.get(name)
        if not entries:
            return _encode(error_answer(Code.NOT_FOUND, f"this plugin has no handler {name!r}"))
        raw = [e for e in entries if e.kind == "raw"]
        if raw:
            out = raw[0].fn(bytes(data))
            return out.encode("utf-8") if isinstance(out, str) else bytes(out)
        request = parse(data)
        try:
            entry = _pick(name, entries, request)
            return _encode(_answer(request, entry.fn(request)))
        except Fail as fail:
            return _encode(fail.answer())

    def world_class(self) -> type:
        """The class componentize-py instantiates for the world's exports ``handle`` and ``handlers``."""
        plugin = self

        class WitWorld:
            def handle(self, handler: str, input: bytes) -> bytes:
                return plugin.handle(handler, input)

            def handlers(self) -> list[str]:
                return plugin.handlers()

        return WitWorld


def _pick(name: str, entries: list[_Entry], request: Envelope) -> _Entry:
    """The registration of ``name`` for this request; none is the client's (404/405) or the manifest's error."""
    if isinstance(request, HttpRequest):
        routes = [e for e in entries if e.kind == "http"]
        for e in routes:
            if e.key == (request.method.upper(), request.route):
                return e
        if len(routes) == 1 and not request.route:
            return routes[0]
        if any(e.key[1] == request.route for e in routes):
            raise Fail(Code.METHOD_NOT_ALLOWED, f"{request.method} is not served on {request.route}")
    elif isinstance(request, GrpcRequest):
        for e in entries:
            if e.kind == "grpc" and e.key == (request.method,):
                return e
    elif isinstance(request, JobRequest):
        for e in entries:
            if e.kind == "job" and e.key == (request.job.type,):
                return e
    elif isinstance(request, EventRequest):
        for e in entries:
            if e.kind == "event" and _topic_pattern(e.key[0]).fullmatch(request.event.topic):
                return e
    for e in entries:
        if e.kind == "any":
            return e
    raise Fail(Code.NOT_FOUND, f"handler {name!r} serves no {_describe(request)}")


def _describe(request: Envelope) -> str:
    if isinstance(request, HttpRequest):
        return f"route {request.method} {request.route or request.path}"
    if isinstance(request, GrpcRequest):
        return f"gRPC method {request.method}"
    if isinstance(request, JobRequest):
        return f"job type {request.job.type}"
    return f"event topic {request.event.topic}"


def _answer(request: Envelope, out: Any) -> dict[str, Any]:
    """A handler's return value as the kernel's answer for this kind of envelope."""
    if isinstance(request, HttpRequest):
        if out is None:
            return no_content().answer()
        if isinstance(out, Response):
            return out.answer()
        return {"status": 200, "body": out}
    if isinstance(request, GrpcRequest):
        if not isinstance(out, dict):
            raise TypeError(f"a gRPC handler answers the reply message as a dict, not {type(out).__name__}")
        return {"message": out}
    if isinstance(request, JobRequest):
        return {} if out is None else {"result": out}
    return {}


def _encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=_JSON).encode("utf-8")
