"""The phases of a capability that keeps nothing per plugin: its handlers see the call itself."""

from __future__ import annotations

from arcana.types import CallContext, PluginSpec


class CallScoped:
    """Base for capabilities without per-plugin state or resources (``log``, ``auth``)."""

    def configure(self, plugin: PluginSpec) -> None:
        return None

    def prepare(self, state: None, call: CallContext) -> CallContext:
        return call

    def close(self) -> None:
        return None
