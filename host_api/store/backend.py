"""The store's backend protocol: what any database behind the store must do.

Every method is scoped by ``plugin``, the calling plugin's name: a backend
must never read or write another plugin's rows. ``call``, when given, is the
plugin call being served: a backend bounds its waits by ``call.deadline``
(SERVICE_UNAVAILABLE when no time is left), sets ``call.may_have_saved``
before it commits a change, and commits nothing once the deadline has
passed, so that a client told "timeout" was not silently served. Inputs arrive validated
(names, paths, sizes); values still go to the database as bound parameters
only. Errors are the public model: ``NotFound``, ``Conflict`` (stale
version, or a create of an existing id), ``ValidationFailed``, and
``ServiceUnavailable`` when the database cannot be reached. Methods are
called from many threads at once.

A backend in a few lines (a dict, for a test double)::

    class DictBackend:
        def __init__(self) -> None:
            self.docs: dict[tuple[str, str, str], Document] = {}

        def get(self, plugin: str, collection: str, id: str) -> Document:
            try:
                return self.docs[plugin, collection, id]
            except KeyError:
                raise NotFound(f"no document '{id}' in '{collection}'") from None
        ...

``arcana_host.store.sql_backend.SqlStoreBackend`` is the real one; the
key-value methods alone (``KvBackend``) may come from another backend
(``redis_kv.RedisKv``, joined by ``split_backend.SplitStoreBackend``). The
contract suite in ``tests/host_api/store`` runs against each backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from arcana.types import CallContext
from arcana_host.store.types import DeleteOp, Document, KvEntry, Page, PutOp, Query


class KvBackend(Protocol):
    """The key-value half alone: ``SqlStoreBackend`` is one, ``RedisKv`` another (see ``split_backend``)."""

    def kv_get(self, plugin: str, key: str, call: CallContext | None = None) -> KvEntry:
        """The live value of a key (an expired key is not found)."""

    def kv_set(self, plugin: str, key: str, value: Any, ttl_s: float | None, call: CallContext | None = None) -> None:
        """Set a key, replacing any value and TTL; ``ttl_s`` None keeps it forever."""

    def kv_delete(self, plugin: str, key: str, call: CallContext | None = None) -> bool:
        """Remove a key; whether it existed."""

    def kv_incr(self, plugin: str, key: str, by: int, call: CallContext | None = None) -> int:
        """Add ``by`` to an integer key atomically (a missing key counts as 0); the new value."""

    def close(self) -> None:
        """Release connections."""


class StoreBackend(KvBackend, Protocol):
    def get(self, plugin: str, collection: str, id: str, call: CallContext | None = None) -> Document:
        """The document, or ``NotFound``."""

    def put(self, plugin: str, op: PutOp, call: CallContext | None = None) -> Document:
        """Create or replace (see ``PutOp``); a new id is generated when ``op.id`` is None."""

    def delete(self, plugin: str, op: DeleteOp, call: CallContext | None = None) -> None:
        """Remove a document; ``NotFound`` if absent, ``Conflict`` on a stale expected version."""

    def query(self, plugin: str, query: Query, call: CallContext | None = None) -> Page:
        """One page of the documents matching every condition, and the total count."""

    def batch(
        self, plugin: str, ops: Sequence[PutOp | DeleteOp], call: CallContext | None = None
    ) -> list[Document | None]:
        """Apply all operations in one transaction, or none: the first failure is raised."""
