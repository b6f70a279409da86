"""Run as a separate process by the concurrency test: increment one key and
update one document with versions, from several threads, then exit 0.

    python hammer.py DATABASE_URL THREADS ROUNDS
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.errors import Conflict
from arcana_host.store.backend import StoreBackend
from arcana_host.store.sql_backend import SqlStoreBackend
from arcana_host.store.types import PutOp

PLUGIN, COLLECTION, DOC, KEY = "hammer", "counters", "shared", "hits"


def bump_document(backend: StoreBackend) -> int:
    """Read-modify-write with optimistic versioning; returns how many conflicts it retried."""
    conflicts = 0
    while True:
        doc = backend.get(PLUGIN, COLLECTION, DOC)
        try:
            backend.put(PLUGIN, PutOp(COLLECTION, {"count": doc.body["count"] + 1}, DOC, doc.version))
            return conflicts
        except Conflict:
            conflicts += 1


def work(backend: StoreBackend, rounds: int) -> int:
    conflicts = 0
    for _ in range(rounds):
        backend.kv_incr(PLUGIN, KEY, 1)
        conflicts += bump_document(backend)
    return conflicts


def hammer(backend: StoreBackend, threads: int, rounds: int) -> int:
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(lambda _: work(backend, rounds), range(threads)))


if __name__ == "__main__":
    url, threads, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    database = Database(DatabaseConfig(url=url))
    try:
        backend = SqlStoreBackend(database.engine)
        backend.kv_get(PLUGIN, KEY)  # connected: now tell the test, and wait for its go
        print("ready", flush=True)
        sys.stdin.readline()
        print(hammer(backend, threads, rounds))
    finally:
        database.close()
