"""The store's backends behind their breakers, with retries where they are safe.

``GuardedKv`` wraps a ``KvBackend`` and ``GuardedStore`` a whole
``StoreBackend``; each call goes through the backend's ``BackendGuard``
(``arcana.resilience.guard``: what counts against the breaker, and the
retry rule), within the time its plugin call has left::

    store = GuardedStore(SqlStoreBackend(engine), BackendGuard(resilience.backend("database"), resilience.retry))

Safe to repeat whatever happened: ``get``, ``query``, ``kv_get`` (reads) and
``kv_set`` (setting the same value twice leaves one value). The rest is
repeated only when nothing reached the backend: ``put`` (a second insert, a
second version), ``delete`` and ``kv_delete`` (the second one reports "not
there"), ``batch``, ``kv_incr`` (added twice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from arcana.resilience.guard import BackendGuard
from arcana.types import CallContext
from arcana_host.store.backend import KvBackend, StoreBackend
from arcana_host.store.types import DeleteOp, Document, KvEntry, Page, PutOp, Query

T = TypeVar("T")


def _deadline(call: CallContext | None) -> float | None:
    return call.deadline if call is not None and call.deadline else None


class GuardedKv:
    """A ``KvBackend`` whose calls go through ``guard``."""

    def __init__(self, kv: KvBackend, guard: BackendGuard) -> None:
        self._kv = kv
        self.guard = guard

    def _run(self, fn: Callable[[], T], call: CallContext | None, *, safe: bool) -> T:
        return self.guard.call(fn, safe=safe, deadline=_deadline(call))

    def kv_get(self, plugin: str, key: str, call: CallContext | None = None) -> KvEntry:
        return self._run(lambda: self._kv.kv_get(plugin, key, call), call, safe=True)

    def kv_set(self, plugin: str, key: str, value: Any, ttl_s: float | None, call: CallContext | None = None) -> None:
        self._run(lambda: self._kv.kv_set(plugin, key, value, ttl_s, call), call, safe=True)

    def kv_delete(self, plugin: str, key: str, call: CallContext | None = None) -> bool:
        return self._run(lambda: self._kv.kv_delete(plugin, key, call), call, safe=False)

    def kv_incr(self, plugin: str, key: str, by: int, call: CallContext | None = None) -> int:
        return self._run(lambda: self._kv.kv_incr(plugin, key, by, call), call, safe=False)

    def close(self) -> None:
        self._kv.close()


class GuardedStore(GuardedKv):
    """A ``StoreBackend`` whose calls, documents and kv alike, go through ``guard``."""

    def __init__(self, store: StoreBackend, guard: BackendGuard) -> None:
        super().__init__(store, guard)
        self._store = store

    def get(self, plugin: str, collection: str, id: str, call: CallContext | None = None) -> Document:
        return self._run(lambda: self._store.get(plugin, collection, id, call), call, safe=True)

    def put(self, plugin: str, op: PutOp, call: CallContext | None = None) -> Document:
        return self._run(lambda: self._store.put(plugin, op, call), call, safe=False)

    def delete(self, plugin: str, op: DeleteOp, call: CallContext | None = None) -> None:
        self._run(lambda: self._store.delete(plugin, op, call), call, safe=False)

    def query(self, plugin: str, query: Query, call: CallContext | None = None) -> Page:
        return self._run(lambda: self._store.query(plugin, query, call), call, safe=True)

    def batch(
        self, plugin: str, ops: Sequence[PutOp | DeleteOp], call: CallContext | None = None
    ) -> list[Document | None]:
        return self._run(lambda: self._store.batch(plugin, ops, call), call, safe=False)
