"""Store throughput through a plugin: get, put and query on SQLite and PostgreSQL.

    .venv/bin/python bench/store_bench.py [--seconds 2] [--docs 10000]

For each backend the committed `notes` plugin (plugins/notes/notes.wasm) is
compiled by the kernel's engine with the real `store` capability linked, and
its handlers are called in process, one call at a time, with http envelopes:

- get:   `get_note` of a random one of the seeded notes (store_get);
- put:   `create_note` of a new note (store_put);
- query: `list_notes`, a page of 20 from the seeded notes, newest first, at a
         random page (store_query: count + one page, sorted by created_at);
- query tag+title: the same, filtered by tag ($contains) and sorted by a body
         field (title): the JSON path on every row.

Beside each, the same operation on the backend called directly from Python
(no plugin, no JSON envelope) is the baseline of the same run. SQLite runs
on a temporary file; PostgreSQL in a temporary schema of the `test` database
on 127.0.0.1:5432, skipped when unreachable. Numbers are ops/s on one thread.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from arcana.config import DatabaseConfig
from arcana.database import Database, migrate
from arcana.engine.extism_engine import ExtismEngine
from arcana.envelopes import HttpRequest, http_envelope
from arcana.manifest import Manifest
from arcana.types import CallContext, LinkedFunction, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.log import LogCapability
from arcana_host.store import StoreCapability, StoreConfig
from arcana_host.store import requests as parse
from arcana_host.store.sql_backend import SqlStoreBackend
from arcana_host.store.types import PutOp

ROOT = Path(__file__).resolve().parent.parent
NOTES = ROOT / "plugins" / "notes" / "notes.wasm"
CONTEXT = CallContext("notes", "1.0.0")
TAGS = ["work", "home", "ideas", "later", "read"]
# An admin principal: notes then reads across owners, the same work as before notes became per-user.
ADMIN = {"sub": "bench", "roles": ["admin"]}


def envelope(
    method: str,
    path: str,
    route: str,
    params: dict[str, str] | None = None,
    query: dict[str, list[str]] | None = None,
    body: Any = None,
) -> bytes:
    data = json.dumps(body).encode() if body is not None else b""
    req = HttpRequest(method, path, query or {}, {"content-type": "application/json"} if data else {}, data, "bench")
    return http_envelope(req, route, params or {}, ADMIN)


def linked(*capabilities: Any) -> list[LinkedFunction]:
    """Each capability configured and linked for `notes` as the loader does it (grants: log and store)."""
    spec = PluginSpec(Manifest("notes", "1.0.0"), frozenset({"log", "store"}))
    return [fn for cap in capabilities for fn in link_capability(cap, spec).values()]


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        fn()
    calls, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(20):
            fn()
        calls += 20
    return calls / elapsed


def seed(backend: SqlStoreBackend, docs: int) -> list[str]:
    ids = [f"n{i:06d}" for i in range(docs)]
    for start in range(0, docs, 100):
        backend.batch(
            "notes",
            [
                PutOp(
                    "notes",
                    {"title": f"note {random.randrange(10**6):06d}", "body": "x" * 200, "tags": random.sample(TAGS, 2)},
                    id=i,
                )
                for i in ids[start : start + 100]
            ],
        )
    return ids


def bench_backend(url: str, seconds: float, docs: int) -> dict[str, tuple[float, float]]:
    database = Database(DatabaseConfig(url=url))
    migrate(database.engine)
    backend = SqlStoreBackend(database.engine)
    store = StoreCapability(StoreConfig(), backend)
    functions = linked(LogCapability(), store)
    instance = ExtismEngine().compile(NOTES.read_bytes(), functions, memory_mb=16, timeout_ms=2000).instantiate()
    ids = seed(backend, docs)
    pages = docs // 20

    def plugin(handler: str, make: Callable[[], bytes]) -> Callable[[], object]:
        def call() -> object:
            out = json.loads(instance.call(handler, make(), CONTEXT))
            assert "error" not in out, out
            return out

        return call

    def get_env() -> bytes:
        return envelope("GET", "/api/v1/notes/x", "/api/v1/notes/{id}", {"id": random.choice(ids)})

    def put_env() -> bytes:
        return envelope("POST", "/api/v1/notes", "/api/v1/notes", body={"title": "new", "tags": ["work"]})

    def list_env() -> bytes:
        page = str(random.randint(1, pages))
        return envelope("GET", "/api/v1/notes", "/api/v1/notes", query={"size": ["20"], "page": [page]})

    def tag_env() -> bytes:
        query = {
            "size": ["20"],
            "tag": ["work"],
            "sort": ["title"],
            "order": ["asc"],
            "page": [str(random.randint(1, pages // 5))],
        }
        return envelope("GET", "/api/v1/notes", "/api/v1/notes", query=query)

    config = StoreConfig()

    def direct_query(**extra: Any) -> object:
        return backend.query("notes", parse.query({"collection": "notes", "size": 20, **extra}, config))

    subjects = {
        "get": (plugin("get_note", get_env), lambda: backend.get("notes", "notes", random.choice(ids))),
        "put": (plugin("create_note", put_env), lambda: backend.put("notes", PutOp("notes", {"title": "new"}))),
        "query": (plugin("list_notes", list_env), lambda: direct_query(order="desc", page=random.randint(1, pages))),
        "query tag+title": (
            plugin("list_notes", tag_env),
            lambda: direct_query(
                filter={"tags": {"$contains": "work"}}, sort="title", page=random.randint(1, pages // 5)
            ),
        ),
    }
    results = {
        name: (rate(via_plugin, seconds), rate(direct, seconds)) for name, (via_plugin, direct) in subjects.items()
    }
    database.close()
    return results


def postgres_schema() -> tuple[str, Callable[[], None]] | None:
    for user in ("postgres", "root"):
        try:
            conn = psycopg.connect(
                host="127.0.0.1", port=5432, dbname="test", user=user, connect_timeout=3, autocommit=True
            )
        except psycopg.Error:
            continue
        return _temp_schema(conn, user)
    return None


def _temp_schema(conn: psycopg.Connection, user: str) -> tuple[str, Callable[[], None]]:
    schema = f"arcana_bench_{secrets.token_hex(4)}"
    conn.execute(f'CREATE SCHEMA "{schema}"')

    def drop() -> None:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()

    return f"postgresql+psycopg://{user}@127.0.0.1:5432/test?options=-csearch_path%3D{schema}", drop


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    args.add_argument("--docs", type=int, default=10_000, help="documents seeded (default 10000)")
    opts = args.parse_args()
    random.seed(7)
    print(f"store ops/s, one thread, {opts.docs} seeded documents; plugin = notes.wasm handler -> host function")
    print(f"{'backend':<11} {'operation':<16} {'via plugin':>11} {'direct':>9} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str, Callable[[], None]]] = [("sqlite", f"sqlite:///{tmp}/bench.db", lambda: None)]
        pg = postgres_schema()
        if pg is None:
            print("postgresql: skipped (no server at 127.0.0.1:5432/test)", file=sys.stderr)
        else:
            backends.append(("postgresql", *pg))
        for name, url, cleanup in backends:
            try:
                for op, (plugin_rate, direct_rate) in bench_backend(url, opts.seconds, opts.docs).items():
                    ratio = plugin_rate / direct_rate
                    print(f"{name:<11} {op:<16} {plugin_rate:>11,.0f} {direct_rate:>9,.0f} {ratio:>6.2f}")
            finally:
                cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
