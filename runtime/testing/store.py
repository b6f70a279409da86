"""The plugin's store as a test seeds and reads it: documents and key-value entries, through the store
capability's own host functions (the same checks, the plugin's namespace, the kernel's database).
"""

from __future__ import annotations

from typing import Any, Protocol

from arcana.errors import NotFound


class StoreCaller(Protocol):
    """Calls one store host function as the plugin would (``PluginHarness._store_call``)."""

    def __call__(self, function: str, req: dict[str, Any]) -> dict[str, Any]: ...


class StoreView:
    """The plugin's documents, through the store capability's own host functions (checks and all)."""

    def __init__(self, call: StoreCaller) -> None:
        self._call = call

    def put(self, collection: str, id: str | None, doc: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a document (``id`` None: a new id); the document as the plugin would read it."""
        req: dict[str, Any] = {"collection": collection, "doc": doc}
        if id is not None:
            req["id"] = id
        return dict(self._call("store_put", req)["doc"])

    def get(self, collection: str, id: str) -> dict[str, Any] | None:
        """The document (its body plus id, version, created_at, updated_at), or None when there is none."""
        try:
            return dict(self._call("store_get", {"collection": collection, "id": id})["doc"])
        except NotFound:
            return None

    def delete(self, collection: str, id: str) -> bool:
        """Remove a document; whether there was one."""
        try:
            self._call("store_delete", {"collection": collection, "id": id})
        except NotFound:
            return False
        return True

    def query(self, collection: str, filter: dict[str, Any] | None = None, **page: Any) -> list[dict[str, Any]]:
        """Documents matching ``filter`` (the plugin's filter syntax); ``sort=``, ``order=``, ``page=``, ``size=``
        as ``store_query`` takes them (one page: 20 by default, at most the configured maximum).
        """
        req: dict[str, Any] = {"collection": collection, **page}
        if filter is not None:
            req["filter"] = filter
        return [dict(d) for d in self._call("store_query", req)["items"]]


class KvView:
    """The plugin's key-value entries, through the store capability's own host functions."""

    def __init__(self, call: StoreCaller) -> None:
        self._call = call

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        req: dict[str, Any] = {"key": key, "value": value}
        if ttl is not None:
            req["ttl"] = ttl
        self._call("kv_set", req)

    def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` when the key is not set (or expired)."""
        entry = self._call("kv_get", {"key": key})
        return entry["value"] if entry["found"] else default

    def delete(self, key: str) -> bool:
        return bool(self._call("kv_delete", {"key": key})["deleted"])

    def incr(self, key: str, by: int = 1) -> int:
        return int(self._call("kv_incr", {"key": key, "by": by})["value"])
