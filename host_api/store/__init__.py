"""The ``store`` capability: durable documents and key-value entries, scoped to each plugin.

Units: ``config`` (``capabilities.store`` bounds), ``backend`` (the protocol),
``sql_backend``/``sql_kv`` (SQLAlchemy: SQLite or PostgreSQL), ``redis_kv`` (the kv on
Redis) and ``split_backend`` (documents and kv from two backends), ``schema``
(tables; migrations in ``arcana/migrations``), ``requests``/``filter_parse``
(validation), ``filters`` (to SQL), ``metrics``, ``capability`` (host functions).
"""

from arcana_host.store.backend import StoreBackend
from arcana_host.store.capability import StoreCapability
from arcana_host.store.config import StoreConfig

__all__ = ["StoreBackend", "StoreCapability", "StoreConfig"]
