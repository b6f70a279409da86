"""Contract: no lost update under concurrency, across threads and across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from arcana.database import Database
from arcana_host.store.sql_backend import SqlStoreBackend
from arcana_host.store.types import PutOp
from host_api.store.hammer import COLLECTION, DOC, KEY, PLUGIN, hammer

HAMMER = Path(__file__).with_name("hammer.py")
THREADS, ROUNDS = 4, 10


def test_threads_and_two_processes_lose_no_update(backend: SqlStoreBackend, database: Database) -> None:
    backend.put(PLUGIN, PutOp(COLLECTION, {"count": 0}, DOC))
    url = database.engine.url.render_as_string(hide_password=False)
    others = [
        subprocess.Popen(
            [sys.executable, str(HAMMER), url, str(THREADS), str(ROUNDS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for proc in others:  # all three processes start together
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr
    for proc in others:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    conflicts = hammer(backend, THREADS, ROUNDS)
    for proc in others:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        conflicts += int(out)
    total = 3 * THREADS * ROUNDS
    doc = backend.get(PLUGIN, COLLECTION, DOC)
    assert backend.kv_get(PLUGIN, KEY).value == total
    assert doc.body["count"] == total and doc.version == total + 1
    assert conflicts > 0  # the versions were really contended
