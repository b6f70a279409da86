"""``SplitStoreBackend``: documents from one backend, the key-value space from another.

The store's documents stay in the kernel's database while its kv may live on
Redis (``capabilities.store.kv_backend: redis``)::

    backend = SplitStoreBackend(SqlStoreBackend(engine), RedisKv.from_config(config))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arcana.types import CallContext
from arcana_host.store.backend import KvBackend, StoreBackend
from arcana_host.store.types import DeleteOp, Document, KvEntry, Page, PutOp, Query


class SplitStoreBackend:
    """A ``StoreBackend``: document methods go to ``documents``, kv methods to ``kv``; close closes both."""

    def __init__(self, documents: StoreBackend, kv: KvBackend) -> None:
        self.documents = documents
        self.kv = kv

    def get(self, plugin: str, collection: str, id: str, call: CallContext | None = None) -> Document:
        return self.documents.get(plugin, collection, id, call)

    def put(self, plugin: str, op: PutOp, call: CallContext | None = None) -> Document:
        return self.documents.put(plugin, op, call)

    def delete(self, plugin: str, op: DeleteOp, call: CallContext | None = None) -> None:
        self.documents.delete(plugin, op, call)

    def query(self, plugin: str, query: Query, call: CallContext | None = None) -> Page:
        return self.documents.query(plugin, query, call)

    def batch(
        self, plugin: str, ops: Sequence[PutOp | DeleteOp], call: CallContext | None = None
    ) -> list[Document | None]:
        return self.documents.batch(plugin, ops, call)

    def kv_get(self, plugin: str, key: str, call: CallContext | None = None) -> KvEntry:
        return self.kv.kv_get(plugin, key, call)

    def kv_set(self, plugin: str, key: str, value: Any, ttl_s: float | None, call: CallContext | None = None) -> None:
        self.kv.kv_set(plugin, key, value, ttl_s, call)

    def kv_delete(self, plugin: str, key: str, call: CallContext | None = None) -> bool:
        return self.kv.kv_delete(plugin, key, call)

    def kv_incr(self, plugin: str, key: str, by: int, call: CallContext | None = None) -> int:
        return self.kv.kv_incr(plugin, key, by, call)

    def close(self) -> None:
        try:
            self.kv.close()
        finally:
            self.documents.close()
