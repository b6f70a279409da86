"""The ``events`` capability: a plugin emits events on the topics its manifest lists.

Units: ``topics`` (topic names, patterns and the kernel's reserved prefixes),
``capability`` (the host function and the ``Emitter`` it emits through).
Delivery to ``[[subscribe]]`` handlers is the kernel's event bus.
"""

from arcana_host.events.capability import Emitter, EventsCapability

__all__ = ["Emitter", "EventsCapability"]
