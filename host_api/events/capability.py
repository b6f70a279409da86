"""The ``events`` capability: ``event_emit`` on the topics a plugin's manifest lists.

    event_emit {topic, payload?} -> {}

``topic`` must match one of the manifest's ``capabilities.events`` patterns
and must not be one of the kernel's (``auth.``, ``plugin.``, ``admin.``):
FORBIDDEN otherwise. ``payload`` is a JSON object (default ``{}``) of at most
``queue.max_payload_bytes``. The event carries the plugin as its source, the
calling request's principal (its ``sub``, or null) and its trace context;
the kernel's bus delivers it to every matching ``[[subscribe]]`` handler
through the queue. An emit counts against the call's
``queue.max_enqueues_per_call``, like an enqueue (RATE_LIMITED beyond it).

    [capabilities]
    events = ["note.*"]     # grant: events

A pattern that is not one (bad characters, or only ever a kernel topic)
refuses the plugin at load, naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from arcana import jsonio
from arcana.config import ArcanaConfig
from arcana.errors import Forbidden, PayloadTooLarge, Problem, ServiceUnavailable, ValidationFailed
from arcana.types import CallContext, CapabilityRefused, HostFunction, JsonObject, PluginSpec
from arcana_host.events import topics
from arcana_host.queue.budget import CallBudget
from arcana_host.queue.requests import refuse_unknown

EMIT_FIELDS = frozenset({"topic", "payload"})


class Emitter(Protocol):
    """What the capability needs of the kernel's event bus (``arcana.events.EventBus``)."""

    def emit(
        self,
        topic: str,
        payload: dict[str, Any],
        *,
        source: str = "kernel",
        principal: str | None = None,
        traceparent: str = "",
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Topics:
    """Per plugin: its name (the events' source) and its compiled topic patterns."""

    plugin: str
    patterns: tuple[re.Pattern[str], ...]

    def allows(self, topic: str) -> bool:
        return any(p.fullmatch(topic) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class Scope:
    topics: Topics
    call: CallContext
    budget: CallBudget


def _problems(plugin: str, patterns: Any) -> list[Problem]:
    if not isinstance(patterns, tuple) or not patterns:
        return [Problem("capabilities.events", "lists no topics", 'list the topic patterns it emits, e.g. ["note.*"]')]
    problems = []
    for pattern in patterns:
        if not topics.is_pattern(pattern):
            fix = "use dotted lowercase words and *, e.g. note.*"
            problems.append(Problem("capabilities.events", f"'{pattern[:100]}' is not a topic pattern", fix))
        elif topics.is_kernel_topic(pattern):
            fix = "choose a topic of the plugin's own, e.g. " + f"{plugin.replace('-', '_')}.*"
            problems.append(Problem("capabilities.events", f"'{pattern}' is a kernel topic", fix))
    return problems


@dataclass(frozen=True)
class EventsCapabilityConfig:
    """``capabilities.events``: no settings of its own (bounds are the queue's), so any key there is a typo."""


class EventsCapability:
    name = "events"

    def __init__(self, config: ArcanaConfig, bus: Emitter | None) -> None:
        config.section("events", EventsCapabilityConfig)  # refuses unknown keys, naming them
        self.limit = config.queue.max_enqueues_per_call
        self.max_payload_bytes = config.queue.max_payload_bytes
        self._bus = bus

    @classmethod
    def from_config(cls, config: ArcanaConfig, bus: Emitter | None) -> EventsCapability:
        """On the kernel's bus; without one (``arcana plugin check``) it only validates."""
        return cls(config, bus)

    @property
    def bus(self) -> Emitter:
        if self._bus is None:
            raise ServiceUnavailable("the event bus is not available in this process")
        return self._bus

    def configure(self, plugin: PluginSpec) -> Topics:
        patterns = plugin.manifest.capabilities.get("events")
        problems = _problems(plugin.name, patterns)
        if problems:
            raise CapabilityRefused(problems)
        assert isinstance(patterns, tuple)  # _problems refused anything else
        return Topics(plugin.name, tuple(topics.compile_pattern(p) for p in patterns))

    def prepare(self, allowed: Topics, call: CallContext) -> Scope:
        return Scope(allowed, call, CallBudget.of(call, self.limit))

    def close(self) -> None:
        return None  # the bus is the kernel's

    def event_emit(self, scope: Scope, req: JsonObject) -> JsonObject:
        topic, payload = self._topic(scope, req), self._payload(req)
        scope.budget.spend("event_emit")
        principal = (scope.call.principal or {}).get("sub")
        scope.call.may_have_saved = True
        self.bus.emit(
            topic,
            payload,
            source=scope.topics.plugin,
            principal=principal if isinstance(principal, str) else None,
            traceparent=scope.call.traceparent,
        )
        return {}

    def _topic(self, scope: Scope, req: JsonObject) -> str:
        topic = req.get("topic")
        if not isinstance(topic, str) or not topics.is_topic(topic):
            raise ValidationFailed(
                f"'topic' must be dotted lowercase words of at most {topics.MAX_TOPIC_CHARS} characters, "
                "e.g. note.created"
            )
        if topics.is_kernel_topic(topic):
            raise Forbidden(f"'{topic}' is a kernel topic (auth., plugin., admin.): plugins cannot emit it")
        if not scope.topics.allows(topic):
            raise Forbidden(
                f"plugin '{scope.topics.plugin}' may not emit '{topic}': it matches none of its "
                "capabilities.events patterns"
            )
        return topic

    def _payload(self, req: JsonObject) -> dict[str, Any]:
        refuse_unknown("event_emit", req, EMIT_FIELDS)
        payload = req.get("payload")
        if payload is None:
            return {}
        if not isinstance(payload, dict):
            raise ValidationFailed("'payload' must be a JSON object")
        size = len(jsonio.encode(payload))
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {size} bytes; the limit is {self.max_payload_bytes} (queue.max_payload_bytes)"
            )
        return payload

    functions = (HostFunction("event_emit", "events", event_emit),)
