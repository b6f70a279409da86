"""The shape every host capability shares (in the spirit of Spin's factors).

A capability is one unit: its config, its backend(s), the host functions it
offers and the grant that unlocks them. The kernel composes capabilities in
order and never needs editing to add one::

    class ClockCapability:
        name = "clock"

        def host_functions(self) -> list[HostFunction]:
            return [HostFunction("clock_now", "clock", lambda ctx, req: {"now": time.time()})]

        def configure(self, manifest: Manifest) -> list[Problem]:
            return []          # refuse a plugin here, e.g. for bad capability options

        def close(self) -> None:
            pass

Host functions take and return JSON objects. An ``ArcanaError`` raised by a
handler reaches the plugin as ``{"error": {"code", "message"}}``; anything
else is logged and reaches it as INTERNAL. Nothing raised escapes into the
engine (the Extism Python SDK would print and drop it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from arcana.errors import Problem
from arcana.manifest import Manifest


@dataclass(frozen=True)
class CallContext:
    """Who is calling a host function: fixed per plugin call."""

    plugin: str
    version: str
    request_id: str = ""
    principal: dict[str, Any] | None = None


HostHandler = Callable[[CallContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class HostFunction:
    name: str
    capability: str
    handler: HostHandler


@dataclass(frozen=True)
class HostServices:
    """Kernel services a capability may be built on (absent in tools such as `arcana plugin check`)."""

    identity: Any = None
    # The kernel's ``arcana.database.Database`` (schema already prepared).
    database: Any = None


class Capability(Protocol):
    name: str

    def host_functions(self) -> Sequence[HostFunction]: ...

    def configure(self, manifest: Manifest) -> list[Problem]: ...

    def close(self) -> None: ...
