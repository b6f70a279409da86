"""The ``store`` capability: plugin-scoped documents and key-value entries.

Host functions (JSON in, JSON out; the caller's plugin name scopes every one):

    store_get    {collection, id}                                -> {doc}
    store_put    {collection, id?, doc, expected_version?}       -> {doc}
    store_delete {collection, id, expected_version?}             -> {deleted: true}
    store_query  {collection, filter?, sort?, order?, page?, size?}
                                                   -> {items, total, page, size}
    store_batch  {ops: [{op: "put"|"delete", ...as above}]}      -> {results: [{doc}|{deleted}]}
    kv_get       {key}                                           -> {found, value}
    kv_set       {key, value, ttl?}                              -> {}
    kv_delete    {key}                                           -> {deleted}
    kv_incr      {key, by?}                                      -> {value}

A document is its body plus ``id``, ``version``, ``created_at`` and
``updated_at``. Errors: NOT_FOUND, CONFLICT (stale ``expected_version``),
VALIDATION_FAILED, PAYLOAD_TOO_LARGE, SERVICE_UNAVAILABLE (database or Redis down).
Grant: ``store = true`` in the manifest and ``store`` in the operator's grants.

Each host call works within the time its plugin call has left: a lock wait
or a statement that would outlive the caller answers SERVICE_UNAVAILABLE
(nothing saved) instead of saving after the client was told "timeout".
A kv on Redis (``capabilities.store.kv_backend: redis``) sends nothing once
no time is left; each command it sends is bounded by the Redis client's own
timeouts (``redis_kv``).
"""

from __future__ import annotations

from typing import NamedTuple

from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import ConfigError, ServiceUnavailable
from arcana.resilience.guard import BackendGuard
from arcana.resilience.service import Resilience, redis_breaker_name
from arcana.types import CallContext, HostFunction, JsonObject, PluginSpec
from arcana_host.store import requests as parse
from arcana_host.store.backend import KvBackend, StoreBackend
from arcana_host.store.config import StoreConfig
from arcana_host.store.guarded_backend import GuardedKv, GuardedStore
from arcana_host.store.split_backend import SplitStoreBackend
from arcana_host.store.sql_backend import SqlStoreBackend


class Scope(NamedTuple):
    """One plugin call's view of the store: the plugin's namespace and the call it serves (its deadline)."""

    plugin: str
    call: CallContext


class StoreCapability:
    """Per-plugin state is the plugin's namespace: every collection and key lives under it."""

    name = "store"

    def __init__(self, config: StoreConfig, backend: StoreBackend | None) -> None:
        self.config = config
        self._backend = backend

    @classmethod
    def from_config(
        cls, config: ArcanaConfig, database: Database | None, resilience: Resilience | None = None
    ) -> StoreCapability:
        """The store on the kernel's ``database`` (its kv there or on Redis); without one it only validates.

        No database is ``arcana plugin check``: a Redis kv is then only checked for its client library.
        With ``resilience`` (a serving kernel) each backend is behind its breaker, with retries where safe.
        """
        store = config.section("store", StoreConfig)
        kv = _redis_kv(store) if store.kv_backend == "redis" else None
        if database is None:
            if kv is not None:
                kv.close()
            return cls(store, None)
        backend: StoreBackend = SqlStoreBackend(database.engine)
        if resilience is not None:
            backend = GuardedStore(backend, BackendGuard(resilience.backend("database"), resilience.retry))
            if kv is not None:
                redis = resilience.backend(redis_breaker_name(store.kv_redis_url))
                kv = GuardedKv(kv, BackendGuard(redis, resilience.retry))
        return cls(store, backend if kv is None else SplitStoreBackend(backend, kv))

    @property
    def backend(self) -> StoreBackend:
        if self._backend is None:
            raise ServiceUnavailable("the store is not available in this process")
        return self._backend

    def configure(self, plugin: PluginSpec) -> str:
        return plugin.name

    def prepare(self, namespace: str, call: CallContext) -> Scope:
        return Scope(namespace, call)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()

    def store_get(self, ns: Scope, req: JsonObject) -> JsonObject:
        doc = self.backend.get(ns.plugin, parse.collection(req), str(parse.doc_id(req)), ns.call)
        return {"doc": doc.to_json()}

    def store_put(self, ns: Scope, req: JsonObject) -> JsonObject:
        return {"doc": self.backend.put(ns.plugin, parse.put_op(req, self.config), ns.call).to_json()}

    def store_delete(self, ns: Scope, req: JsonObject) -> JsonObject:
        self.backend.delete(ns.plugin, parse.delete_op(req), ns.call)
        return {"deleted": True}

    def store_query(self, ns: Scope, req: JsonObject) -> JsonObject:
        return self.backend.query(ns.plugin, parse.query(req, self.config), ns.call).to_json()

    def store_batch(self, ns: Scope, req: JsonObject) -> JsonObject:
        results = self.backend.batch(ns.plugin, parse.batch(req, self.config), ns.call)
        return {"results": [{"deleted": True} if d is None else {"doc": d.to_json()} for d in results]}

    def kv_get(self, ns: Scope, req: JsonObject) -> JsonObject:
        entry = self.backend.kv_get(ns.plugin, parse.kv_key(req), ns.call)
        return {"found": entry.found, "value": entry.value}

    def kv_set(self, ns: Scope, req: JsonObject) -> JsonObject:
        key, value = parse.kv_key(req), parse.kv_value(req, self.config)
        self.backend.kv_set(ns.plugin, key, value, parse.ttl(req), ns.call)
        return {}

    def kv_delete(self, ns: Scope, req: JsonObject) -> JsonObject:
        return {"deleted": self.backend.kv_delete(ns.plugin, parse.kv_key(req), ns.call)}

    def kv_incr(self, ns: Scope, req: JsonObject) -> JsonObject:
        return {"value": self.backend.kv_incr(ns.plugin, parse.kv_key(req), parse.incr_by(req), ns.call)}

    functions = tuple(
        HostFunction(fn.__name__, "store", fn)
        for fn in (store_get, store_put, store_delete, store_query, store_batch, kv_get, kv_set, kv_delete, kv_incr)
    )


def _redis_kv(store: StoreConfig) -> KvBackend:
    # redis is an optional extra (`arcana[redis]`): imported only by a deployment that chose it.
    try:
        from arcana_host.store.redis_kv import RedisKv
    except ImportError as exc:
        raise ConfigError(
            f"config key 'capabilities.store.kv_backend' is redis, but the redis client is not installed ({exc}): "
            "install the extra (pip install 'arcana[redis]') or set capabilities.store.kv_backend: sql"
        ) from None
    return RedisKv.from_config(store)
