"""The store's core records: what the host functions parse into and what backends return.

Every value here is already validated (``arcana_host.store.requests``): a
backend may trust names, paths and sizes, and must still pass every value to
the database as a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Fields every document carries, kept by the store beside the body. They are
# reserved at the top level of a document body, and filter/sort on them reads
# the store's own columns.
META_FIELDS = ("id", "version", "created_at", "updated_at")

Scalar = str | int | float | bool | None
# Operators of a filter condition (``{"field": {"$gt": 1}}``); "eq" is the
# plain ``{"field": value}``.
OPERATORS = ("eq", "gt", "gte", "lt", "lte", "in", "prefix", "contains")


@dataclass(frozen=True)
class Document:
    id: str
    version: int
    created_at: str
    updated_at: str
    body: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The document as a plugin sees it: its body plus the metadata fields."""
        return {
            **self.body,
            "id": self.id,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class PutOp:
    """Create or replace a document; ``expected_version`` makes it conditional.

    ``expected_version`` None: upsert. 0: create only (CONFLICT if it exists).
    N > 0: replace only version N (CONFLICT if another version, NOT_FOUND if absent).
    """

    collection: str
    body: dict[str, Any]
    id: str | None = None
    expected_version: int | None = None


@dataclass(frozen=True)
class DeleteOp:
    collection: str
    id: str
    expected_version: int | None = None


@dataclass(frozen=True)
class Condition:
    """One filter condition on a field: ``path`` is ("id",) for metadata or a body path."""

    path: tuple[str, ...]
    op: str
    value: Any

    @property
    def is_meta(self) -> bool:
        return len(self.path) == 1 and self.path[0] in META_FIELDS


@dataclass(frozen=True)
class Query:
    collection: str
    conditions: tuple[Condition, ...] = ()
    sort: tuple[str, ...] = ("created_at",)
    descending: bool = False
    page: int = 1
    size: int = 20


@dataclass(frozen=True)
class Page:
    items: list[Document]
    total: int
    page: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"items": [d.to_json() for d in self.items], "total": self.total, "page": self.page, "size": self.size}


@dataclass(frozen=True)
class KvEntry:
    found: bool
    value: Any = None
