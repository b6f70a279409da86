"""A Redis client with bounded waits, as every Redis-backed part of the kernel opens one.

Imported only by parts that chose Redis (it needs the ``redis`` extra).
Nothing connects until the first command.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HEALTH_CHECK_S = 10


def bounded_client(
    url: str, *, max_connections: int, connect_timeout_s: float, read_timeout_s: float, pool_wait_s: float
) -> redis.Redis:
    """A client on ``url`` whose connect, reply and wait for a pooled connection are all bounded."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_connect_timeout=connect_timeout_s,
        socket_timeout=read_timeout_s,
        health_check_interval=HEALTH_CHECK_S,
        # One immediate retry covers a pooled connection the server closed (a restart); more would
        # only delay the ServiceUnavailable a caller needs to back off.
        retry=Retry(NoBackoff(), 1),
    )
    return redis.Redis.from_pool(pool)
