"""``open_backend``: the queue backend named by ``queue.backend``, built from the config.

Each backend's module is imported only when chosen, so a deployment on the
embedded SQL queue never imports redis (and the Redis one never builds
queue tables it does not use).
"""

from __future__ import annotations

from collections.abc import Callable

from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import ConfigError
from arcana.queue.guarded_backend import GuardedQueueBackend
from arcana.queue.types import QueueBackend
from arcana.resilience.guard import BackendGuard
from arcana.resilience.service import Resilience, redis_breaker_name


def _sql(config: ArcanaConfig, database: Database) -> QueueBackend:
    from arcana.queue.sql_backend import SqlQueueBackend

    return SqlQueueBackend(database.engine)


def _redis(config: ArcanaConfig, database: Database) -> QueueBackend:
    # redis is an optional extra (`arcana[redis]`): imported only by a deployment that chose it.
    try:
        from arcana.queue.redis_backend import RedisQueueBackend
    except ImportError as exc:
        raise ConfigError(
            f"config key 'queue.backend' is redis, but the redis client is not installed ({exc}): "
            "install the extra (pip install 'arcana[redis]') or set queue.backend: sql"
        ) from None

    return RedisQueueBackend.from_config(config.queue)


BACKENDS: dict[str, Callable[[ArcanaConfig, Database], QueueBackend]] = {"sql": _sql, "redis": _redis}


def open_backend(config: ArcanaConfig, database: Database, resilience: Resilience | None = None) -> QueueBackend:
    """SQL on the kernel's own database, or Redis at ``queue.redis_url``.

    With ``resilience`` (a serving kernel) it is behind its backend's breaker, with retries where safe
    (``arcana.queue.guarded_backend``).
    """
    try:
        make = BACKENDS[config.queue.backend]
    except KeyError:  # the config's Literal already refuses this; a programmatic config may not
        raise ConfigError(f"config key 'queue.backend' must be sql or redis, got {config.queue.backend!r}") from None
    backend = make(config, database)
    if resilience is None:
        return backend
    name = "database" if config.queue.backend == "sql" else redis_breaker_name(config.queue.redis_url)
    return GuardedQueueBackend(backend, BackendGuard(resilience.backend(name), resilience.retry))
