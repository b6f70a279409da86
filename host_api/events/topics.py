"""Topic names and topic patterns, as manifests and ``event_emit`` use them.

A topic is dotted lowercase words (``note.created``). A pattern may hold
``*``, which matches any run of characters, dots included: ``note.*``
matches ``note.created`` and ``note.a.b``; ``*`` alone matches every topic.
Topics under the kernel's prefixes (``auth.``, ``plugin.``, ``admin.``) are
the kernel's own: no plugin may emit them, whatever its patterns say.
"""

from __future__ import annotations

import re

from arcana.manifest import TOPIC_RE
from arcana.queue.subscriptions import KERNEL_PREFIXES, compile_pattern

__all__ = ["KERNEL_PREFIXES", "compile_pattern", "is_kernel_topic", "is_pattern", "is_topic"]

MAX_TOPIC_CHARS = 200
_TOPIC = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def is_topic(text: str) -> bool:
    """A concrete topic (no wildcard) of at most MAX_TOPIC_CHARS."""
    return len(text) <= MAX_TOPIC_CHARS and _TOPIC.match(text) is not None


def is_pattern(text: str) -> bool:
    return len(text) <= MAX_TOPIC_CHARS and TOPIC_RE.match(text) is not None


def is_kernel_topic(topic: str) -> bool:
    return topic.startswith(KERNEL_PREFIXES)
