"""Route path templates (`/api/v1/notes/{id}`) and the matcher built from them.

Templates are pure data (the manifest uses them); ``RouteTrie`` is the
immutable matcher the registry builds for each route-table version. A literal
segment wins over a parameter at the same depth, so `/notes/export` and
`/notes/{id}` can coexist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar
from urllib.parse import unquote

from arcana.errors import PathTemplateError

PARAM_RE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
LITERAL_RE = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")

T = TypeVar("T")


@dataclass(frozen=True)
class PathTemplate:
    raw: str
    # Each segment is ("lit", text) or ("param", name).
    segments: tuple[tuple[str, str], ...]

    @property
    def shape(self) -> str:
        """The template with parameter names erased: two routes with one shape collide."""
        return "/" + "/".join(v if k == "lit" else "{}" for k, v in self.segments)

    @classmethod
    def parse(cls, raw: str) -> PathTemplate:
        if not raw.startswith("/"):
            raise PathTemplateError(f"path '{raw}' must start with '/'")
        parts = raw[1:].split("/") if raw != "/" else []
        segments: list[tuple[str, str]] = []
        names: set[str] = set()
        for part in parts:
            match = PARAM_RE.match(part)
            if match:
                if match.group(1) in names:
                    raise PathTemplateError(f"path '{raw}' repeats parameter '{match.group(1)}'")
                names.add(match.group(1))
                segments.append(("param", match.group(1)))
            elif part and LITERAL_RE.match(part) and "{" not in part:
                segments.append(("lit", part))
            else:
                raise PathTemplateError(f"path '{raw}' has an invalid segment '{part}'")
        return cls(raw, tuple(segments))


@dataclass
class _Node(Generic[T]):
    literals: dict[str, _Node[T]] = field(default_factory=dict)
    param: _Node[T] | None = None
    entries: dict[str, tuple[PathTemplate, T]] = field(default_factory=dict)


@dataclass(frozen=True)
class Match(Generic[T]):
    template: PathTemplate
    target: T
    params: dict[str, str]


class RouteTrie(Generic[T]):
    """Matches (method, path) to a target; build once, then read-only."""

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()

    def add(self, method: str, template: PathTemplate, target: T) -> tuple[PathTemplate, T] | None:
        """Insert; return the existing (template, target) instead if the slot is taken."""
        node = self._root
        for kind, value in template.segments:
            if kind == "lit":
                node = node.literals.setdefault(value, _Node())
            else:
                if node.param is None:
                    node.param = _Node()
                node = node.param
        if method in node.entries:
            return node.entries[method]
        node.entries[method] = (template, target)
        return None

    def match(self, method: str, path: str) -> Match[T] | frozenset[str] | None:
        """A Match, or the allowed methods when only the method differs, or None."""
        parts = path[1:].split("/") if path not in ("", "/") else []
        node = self._find(self._root, parts, 0)
        if node is None:
            return None
        entry = node.entries.get(method)
        if entry is None and method == "HEAD":
            entry = node.entries.get("GET")
        if entry is None:
            return frozenset(node.entries)
        template, target = entry
        params = {
            name: unquote(part) for (kind, name), part in zip(template.segments, parts, strict=True) if kind == "param"
        }
        return Match(template, target, params)

    def _find(self, node: _Node[T], parts: list[str], i: int) -> _Node[T] | None:
        if i == len(parts):
            return node if node.entries else None
        child = node.literals.get(parts[i])
        if child is not None:
            found = self._find(child, parts, i + 1)
            if found is not None:
                return found
        if node.param is not None and parts[i]:
            return self._find(node.param, parts, i + 1)
        return None
