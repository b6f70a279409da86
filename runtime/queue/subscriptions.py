"""Topic patterns and the table of ``[[subscribe]]`` handlers the event bus fans out to.

A pattern is a topic in which ``*`` matches any run of characters, dots
included: ``note.*`` matches ``note.created`` and ``note.a.b``, ``*`` alone
matches every topic, and a pattern without ``*`` matches only itself. The
same rule reads ``capabilities.events`` grants.

The table is built once per registry snapshot (patterns compiled then) and
is immutable: the bus swaps the whole table when plugins change, so an emit
running on another thread sees either the old table or the new one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from arcana.manifest import Manifest

# Topics the kernel emits (arcana.events): plugins may not emit them, and only a plugin granted
# KERNEL_EVENTS_GRANT may subscribe to a pattern that reaches them (their payloads name users and addresses).
KERNEL_PREFIXES = ("auth.", "plugin.", "admin.", "breaker.")
KERNEL_EVENTS_GRANT = "events.kernel"


def reaches_kernel(pattern: str) -> bool:
    """Whether ``pattern`` can match a kernel topic: its text before the first ``*`` agrees with a kernel prefix."""
    literal = pattern.split("*", 1)[0]
    return any(literal.startswith(prefix) or prefix.startswith(literal) for prefix in KERNEL_PREFIXES) and (
        "*" in pattern or pattern.startswith(KERNEL_PREFIXES)
    )


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``note.*`` -> a regex matching whole topics; everything but ``*`` is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def topic_matches(pattern: str, topic: str) -> bool:
    return compile_pattern(pattern).fullmatch(topic) is not None


@dataclass(frozen=True, slots=True)
class Target:
    """One handler an event is delivered to: the job's ``target`` is ``"plugin/handler"``."""

    plugin: str
    handler: str

    @property
    def name(self) -> str:
        return f"{self.plugin}/{self.handler}"


@dataclass(frozen=True, slots=True)
class _Entry:
    target: Target
    pattern: re.Pattern[str]


class SubscriptionTable:
    """Which handlers an event topic reaches. Immutable; build a new one per snapshot."""

    def __init__(self, manifests: Iterable[Manifest] = ()) -> None:
        exact: dict[str, list[Target]] = {}
        wild: list[_Entry] = []
        for manifest in manifests:
            for sub in manifest.subscriptions:
                target = Target(manifest.name, sub.handler)
                if "*" in sub.topic:
                    wild.append(_Entry(target, compile_pattern(sub.topic)))
                else:
                    exact.setdefault(sub.topic, []).append(target)
        # Most topics have a few exact subscribers; wildcards are scanned (a handful per deployment).
        self._exact = {topic: tuple(targets) for topic, targets in exact.items()}
        self._wild = tuple(wild)

    def targets(self, topic: str) -> list[Target]:
        """Every handler whose pattern matches ``topic``, each once (two patterns of one handler: one delivery)."""
        found = dict.fromkeys(self._exact.get(topic, ()))
        found.update(dict.fromkeys(e.target for e in self._wild if e.pattern.fullmatch(topic)))
        return list(found)

    def __len__(self) -> int:
        return sum(map(len, self._exact.values())) + len(self._wild)
