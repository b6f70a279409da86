"""The public host-function catalogue, derived from the capabilities themselves.

Every function a plugin may import lives in namespace ``extism:host/user``
and belongs to one grant. The table is read off each capability class's
``functions`` declaration, so it cannot drift from what the kernel links; the
guest SDKs (Zig, AssemblyScript, C) are checked against it in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from arcana.queue.subscriptions import KERNEL_EVENTS_GRANT
from arcana.types import HOST_NAMESPACE, HostFunction
from arcana_host.auth import AuthCapability
from arcana_host.events import EventsCapability
from arcana_host.http import HttpCapability
from arcana_host.log import LogCapability
from arcana_host.queue import QueueCapability
from arcana_host.store import StoreCapability

__all__ = ["CAPABILITY_CLASSES", "CATALOG", "HOST_NAMESPACE", "KNOWN_GRANTS", "capability_of"]
# The capability classes a kernel offers, in the order they are built and closed.
CAPABILITY_CLASSES = (LogCapability, StoreCapability, AuthCapability, QueueCapability, EventsCapability, HttpCapability)


def _catalog() -> dict[str, HostFunction]:
    found: dict[str, HostFunction] = {}
    for cls in CAPABILITY_CLASSES:
        for fn in cls.functions:
            if fn.name in found:
                raise RuntimeError(f"host function {fn.name} is declared twice")  # a kernel bug, caught by any test
            found[fn.name] = fn
    return found


# Function name -> the grant that unlocks it.
CATALOG: Mapping[str, str] = MappingProxyType({name: fn.grant for name, fn in _catalog().items()})
# Every grant an operator may give: each capability's own and the extra ones its functions name (`auth.issue`).
# `events.kernel` unlocks no function: it lets [[subscribe]] hear the kernel's own topics (arcana_host.registry).
KNOWN_GRANTS = (
    frozenset(cls.name for cls in CAPABILITY_CLASSES) | frozenset(CATALOG.values()) | frozenset({KERNEL_EVENTS_GRANT})
)


def capability_of(function: str) -> str | None:
    return CATALOG.get(function)
