"""The contracts that the kernel, the engine and the host capabilities share.

Nothing here does work; everything else imports these instead of each
other, so the engine never imports a capability and a capability never
imports the executor. The shape of a host capability (a "factor")::

    operator config --build--> Capability          once per kernel
    Capability.configure(PluginSpec) -> state       once per plugin version, pure
    Capability.prepare(state, CallContext) -> call  once per plugin call, on its first host call
    HostFunction.handler(capability, call, request) -> reply   each host call (JSON objects in and out)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from arcana.errors import Problem
from arcana.manifest import Manifest

JsonObject = dict[str, Any]
# The import namespace of every host function (Extism's user namespace).
HOST_NAMESPACE = "extism:host/user"
# The host ABI this kernel speaks: the host functions' names, signatures and JSON shapes, and the envelopes.
# Raised only by a change that breaks built plugins; a plugin built for a newer one is refused (docs/host-abi.md).
HOST_ABI_VERSION = 1


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: the token's subject and roles (the token itself never travels)."""

    sub: str
    roles: tuple[str, ...]
    jti: str = ""
    # Seconds since the epoch at which the token was issued (0 when unknown).
    issued_at: int = 0

    def as_json(self) -> JsonObject:
        return {"sub": self.sub, "roles": list(self.roles)}


class CallTrace(Protocol):
    """A plugin call's span (``arcana.tracing.CallTrace``): each host call makes its own span under it."""

    def host_call(self, function: str, capability: str) -> Any:
        """Start a host call's span (an OpenTelemetry span, opaque here)."""
        ...

    def host_done(self, span: Any, outcome: str) -> None: ...

    def end(self, error: BaseException | None = None) -> None: ...


@dataclass(slots=True)
class CallContext:
    """One plugin call, as host functions see it.

    ``deadline`` is when host functions must be done, on ``time.monotonic()``
    (0: none): the call's end, less the little the executor keeps for the
    plugin to answer; a host function bounds its own waits by it.
    ``prepared`` holds each capability's per-call state, made on first use.
    ``may_have_saved`` is set by a host function just before it commits a
    durable change (and stays set unless it knows the change was undone), so
    that a fault answered afterwards tells the client the change may have
    been saved instead of letting it retry into a duplicate.
    ``traceparent`` is the W3C context the call continues; with tracing on it
    names the call's own span, ``trace``, under which host calls make theirs
    (passed here, not through a context variable: host calls run on the
    plugin's thread).
    ``call_config`` is what a raw-ABI handler is told about its request (the
    ``arcana.*`` keys of ``arcana.raw_config``), set as the instance's Extism
    config for this call only; None for an envelope call.
    """

    plugin: str
    version: str
    request_id: str = ""
    principal: JsonObject | None = None
    deadline: float = 0.0
    traceparent: str = ""
    prepared: dict[str, Any] = field(default_factory=dict)
    may_have_saved: bool = False
    trace: CallTrace | None = None
    call_config: dict[str, str] | None = None


# A host function's implementation, declared on the capability's class and so
# called as ``handler(capability, call, request)``: ``call`` is what the
# capability's ``prepare`` made for this plugin call; request and reply are JSON objects.
HostHandler = Callable[[Any, Any, JsonObject], JsonObject]


@dataclass(frozen=True, slots=True)
class HostFunction:
    """A host function as its capability declares it: the import name, the grant that unlocks it."""

    name: str
    grant: str
    handler: HostHandler
    # Never waits on I/O, a lock or heavy work, so a call may run on the event loop (``arcana.inline``).
    quick: bool = False


# A host function after linking: raw request bytes in, reply bytes out; it never raises.
HostCallable = Callable[[CallContext, bytes], bytes]


@dataclass(frozen=True, slots=True)
class LinkedFunction:
    """What the engine links into one plugin: only functions that plugin was granted."""

    name: str
    call: HostCallable
    quick: bool = False


@dataclass(frozen=True)
class PluginSpec:
    """What a capability is told about a plugin at configure time."""

    manifest: Manifest
    # Capabilities the manifest requests and the operator grants, e.g. {"log", "store"}.
    granted: frozenset[str]

    @property
    def name(self) -> str:
        return self.manifest.name


class CapabilityRefused(Exception):
    """Raised by ``Capability.configure``: the plugin cannot have this capability as asked."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


class Capability(Protocol):
    """One host capability: its grant(s), its host functions, and its lifecycle.

    ``name`` is both the grant that unlocks it and its config section
    (``capabilities.<name>``). ``functions`` is declared once on the class, so
    the public catalogue is known without building anything.
    """

    @property
    def name(self) -> str: ...

    @property
    def functions(self) -> Sequence[HostFunction]: ...

    def configure(self, plugin: PluginSpec) -> Any:
        """Per-plugin state (e.g. allow-lists), pure and quick; raise CapabilityRefused to refuse."""
        ...

    def prepare(self, state: Any, call: CallContext) -> Any:
        """Per-call state handed to each handler of this capability during one plugin call."""
        ...

    def close(self) -> None: ...
