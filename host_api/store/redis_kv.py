"""The store's key-value half on Redis (``capabilities.store.kv_backend: redis``).

The same contract as the SQL kv (``sql_kv``), one plain command each:

    kv_get     GET key                  -> JSON text, or nil (Redis drops expired keys itself)
    kv_set     SET key text [PX ms]     (a SET without PX clears any earlier TTL)
    kv_delete  DEL key                  -> 1 if it was live
    kv_incr    INCRBY key by

A value is its compact JSON text, and the JSON text of a 64-bit integer is
exactly the decimal string ``INCRBY`` accepts, so incr is atomic with no
script: a missing or expired key counts from 0 without a TTL, a live key
keeps its TTL, and anything else (a float, a quoted string, ``2**64``) is
refused by Redis unchanged, answered VALIDATION_FAILED as on SQL.

Keys are ``<prefix>:kv:<n>:<plugin>:<key>``, ``n`` being the plugin name's
length in UTF-8 bytes: the plugin part is read by its length, never by a
separator, so no plugin name or key (colons, any length) reaches into another
plugin's keys.

Deadlines: each command is bounded by the client's socket timeouts
(``READ_TIMEOUT_S``), not by the call's remaining time; a call with no time
left sends nothing (SERVICE_UNAVAILABLE), and a write marks the call
``may_have_saved`` before it is sent. Redis failures of any kind become
``ServiceUnavailable``.

Example::

    kv = RedisKv.from_config(StoreConfig(kv_backend="redis"))
    kv.kv_set("notes", "hits", 0, ttl_s=60)
    kv.kv_incr("notes", "hits", 1)  # -> 1
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from arcana.database import remaining_ms
from arcana.errors import ServiceUnavailable, ValidationFailed
from arcana.redis_client import bounded_client
from arcana.types import CallContext
from arcana_host.store.config import StoreConfig
from arcana_host.store.types import KvEntry

logger = logging.getLogger(__name__)

# Connection bounds: an unreachable or stalled server is reported within a plugin call's usual time.
CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 2.0
POOL_WAIT_S = 1.0
MAX_CONNECTIONS = 64
RETRY_AFTER_S = 1


class RedisKv:
    """The kv methods of ``StoreBackend`` on one Redis server; every key starts with ``prefix:kv:``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    @classmethod
    def from_config(cls, config: StoreConfig) -> RedisKv:
        """A kv on ``config.kv_redis_url`` with bounded timeouts and pool (no I/O until first use)."""
        client = bounded_client(
            config.kv_redis_url,
            max_connections=MAX_CONNECTIONS,
            connect_timeout_s=CONNECT_TIMEOUT_S,
            read_timeout_s=READ_TIMEOUT_S,
            pool_wait_s=POOL_WAIT_S,
        )
        return cls(client, config.kv_key_prefix)

    def redis_key(self, plugin: str, key: str) -> bytes:
        name = plugin.encode()
        return b"%s:kv:%d:%s:%s" % (self._prefix.encode(), len(name), name, key.encode())

    def kv_get(self, plugin: str, key: str, call: CallContext | None = None) -> KvEntry:
        with _unavailable("kv_get", call):
            text = self._client.get(self.redis_key(plugin, key))
        return KvEntry(False) if text is None else KvEntry(True, json.loads(text))

    def kv_set(self, plugin: str, key: str, value: Any, ttl_s: float | None, call: CallContext | None = None) -> None:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        px = None if ttl_s is None else max(1, round(ttl_s * 1000))
        with _unavailable("kv_set", call, write=True):
            self._client.set(self.redis_key(plugin, key), text.encode(), px=px)

    def kv_delete(self, plugin: str, key: str, call: CallContext | None = None) -> bool:
        with _unavailable("kv_delete", call, write=True):
            return bool(self._client.delete(self.redis_key(plugin, key)))

    def kv_incr(self, plugin: str, key: str, by: int, call: CallContext | None = None) -> int:
        try:
            with _unavailable("kv_incr", call, write=True):
                return int(self._client.incrby(self.redis_key(plugin, key), by))
        except _Refused as refused:
            if "overflow" in refused.message:
                raise ValidationFailed(f"kv_incr of key '{key[:80]}' by {by} would overflow a 64-bit integer") from None
            raise ValidationFailed(
                f"key '{key[:80]}' holds a value that is not an integer; kv_incr needs an integer"
            ) from None

    def close(self) -> None:
        self._client.close()


class _Refused(Exception):
    """A command Redis refused as a value error (``ERR value is not an integer``, ``... would overflow``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@contextmanager
def _unavailable(what: str, call: CallContext | None, *, write: bool = False) -> Iterator[None]:
    """Time left is checked first; a write marks the call; Redis failures -> ServiceUnavailable (``raise ... from``)."""
    remaining_ms(call, f"store: {what}")
    before = call is not None and call.may_have_saved
    if write and call is not None:
        call.may_have_saved = True
    try:
        yield
    except redis.ResponseError as exc:
        if call is not None:  # a refused command changed nothing
            call.may_have_saved = before
        if "not an integer" in str(exc) or "overflow" in str(exc):
            raise _Refused(str(exc)) from None
        logger.error("store: %s: Redis refused: %s", what, exc)
        raise _service_unavailable(what, "refused the operation", exc) from exc
    except redis.RedisError as exc:
        logger.warning("store: %s: Redis unavailable: %s", what, exc)
        raise _service_unavailable(what, "is unavailable", exc) from exc


def _service_unavailable(what: str, happened: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"store: {what}: Redis {happened}; try again later",
        retry_after=RETRY_AFTER_S,
        detail=f"{type(exc).__name__}: {exc}",
    )
