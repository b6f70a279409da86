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
VALIDATION_FAILED, PAYLOAD_TOO_LARGE, SERVICE_UNAVAILABLE (database down).
Grant: ``store = true`` in the manifest and ``store`` in the operator's grants.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import Problem
from arcana.manifest import Manifest
from arcana_host.capability import CallContext, HostFunction
from arcana_host.store import requests as parse
from arcana_host.store.backend import StoreBackend
from arcana_host.store.config import StoreConfig
from arcana_host.store.metrics import metered
from arcana_host.store.sql_backend import SqlStoreBackend


class StoreCapability:
    name = "store"

    def __init__(
        self, config: StoreConfig, backend: StoreBackend, database: Database | None = None, owns_database: bool = False
    ) -> None:
        self.config = config
        self.backend = backend
        self._database = database
        self._owns_database = owns_database

    @classmethod
    def from_config(cls, config: ArcanaConfig, database: Database | None = None) -> StoreCapability:
        """The store on the kernel's ``database``, or on one of its own (e.g. in `arcana plugin check`)."""
        owned = database is None
        database = database or Database(config.database)
        return cls(config.section("store", StoreConfig), SqlStoreBackend(database.engine), database, owned)

    def host_functions(self) -> Sequence[HostFunction]:
        handlers = {
            "store_get": self.store_get,
            "store_put": self.store_put,
            "store_delete": self.store_delete,
            "store_query": self.store_query,
            "store_batch": self.store_batch,
            "kv_get": self.kv_get,
            "kv_set": self.kv_set,
            "kv_delete": self.kv_delete,
            "kv_incr": self.kv_incr,
        }
        return [HostFunction(name, self.name, metered(name, fn)) for name, fn in handlers.items()]

    def configure(self, manifest: Manifest) -> list[Problem]:
        """A plugin that asks for the store needs a ready schema (SQLite is upgraded here, once)."""
        if self._database is None or self.name not in manifest.requested_capabilities():
            return []
        reason = self._database.prepare()
        if reason is None:
            return []
        return [
            Problem(
                "capabilities.store",
                f"the store is not ready: {reason}",
                "run `arcana migrate --config <your config>`, or check database.url",
            )
        ]

    def close(self) -> None:
        self.backend.close()
        if self._database is not None and self._owns_database:
            self._database.close()

    def store_get(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        doc = self.backend.get(ctx.plugin, parse.collection(req), str(parse.doc_id(req)))
        return {"doc": doc.to_json()}

    def store_put(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        return {"doc": self.backend.put(ctx.plugin, parse.put_op(req, self.config)).to_json()}

    def store_delete(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        self.backend.delete(ctx.plugin, parse.delete_op(req))
        return {"deleted": True}

    def store_query(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        return self.backend.query(ctx.plugin, parse.query(req, self.config)).to_json()

    def store_batch(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        results = self.backend.batch(ctx.plugin, parse.batch(req, self.config))
        return {"results": [{"deleted": True} if d is None else {"doc": d.to_json()} for d in results]}

    def kv_get(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        entry = self.backend.kv_get(ctx.plugin, parse.kv_key(req))
        return {"found": entry.found, "value": entry.value}

    def kv_set(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        self.backend.kv_set(ctx.plugin, parse.kv_key(req), parse.kv_value(req, self.config), parse.ttl(req))
        return {}

    def kv_delete(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        return {"deleted": self.backend.kv_delete(ctx.plugin, parse.kv_key(req))}

    def kv_incr(self, ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:
        return {"value": self.backend.kv_incr(ctx.plugin, parse.kv_key(req), parse.incr_by(req))}
