"""``capabilities.store`` in the operator's config: the store's bounds and where its kv lives.

The documents are in the kernel's database (``database:`` section), shared
with the kernel's own tables; the key-value space is there too, or on Redis
(``kv_backend: redis``) for a cache shared by several server processes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from arcana.errors import ConfigError


@dataclass(frozen=True)
class StoreConfig:
    # A document body, and a key-value value, as compact UTF-8 JSON.
    max_doc_bytes: int = 262_144
    max_value_bytes: int = 65_536
    # store_query: the page size when none is asked for, and the most allowed.
    default_page_size: int = 20
    max_page_size: int = 100
    # store_batch: operations in one transaction.
    max_batch_ops: int = 100
    # kv_get/kv_set/kv_delete/kv_incr: "sql" (the kernel's database) or "redis" (kv_redis_url, the
    # `redis` extra); every key is stored under "<kv_key_prefix>:kv:".
    kv_backend: Literal["sql", "redis"] = "sql"
    kv_redis_url: str = "redis://127.0.0.1:6379/0"
    kv_key_prefix: str = "arcana"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value <= 0:
                raise ConfigError(f"config key 'capabilities.store.{f.name}' must be positive, got {value}")
        if self.default_page_size > self.max_page_size:
            raise ConfigError(
                f"config key 'capabilities.store.default_page_size' ({self.default_page_size}) "
                f"must not exceed max_page_size ({self.max_page_size})"
            )
        if self.kv_backend not in ("sql", "redis"):
            raise ConfigError(
                f"config key 'capabilities.store.kv_backend' must be sql or redis, got {self.kv_backend!r}"
            )
        if not self.kv_key_prefix:
            raise ConfigError("config key 'capabilities.store.kv_key_prefix' must not be empty")
