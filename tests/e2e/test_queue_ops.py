"""The operator's queue actions against a real `arcana serve` and its SQLite queue: REST, gRPC, CLI, /metrics.

Dead jobs are made through the SQL backend in the server's database before
it starts (a job enqueued with no retries, claimed, failed); the server and
the CLI then see the same queue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format

from arcana.config import DatabaseConfig
from arcana.database import Database
from arcana.exit_codes import ExitCode
from arcana.kernel_protos import kernel_descriptors
from arcana.queue.types import JobSpec
from e2e.server import ArcanaServer, admin_headers, mint

ADMIN_SERVICE = "arcana.admin.v1.AdminService/"


def seed(url: str) -> list[str]:
    """Three dead jobs (oldest first) and one delayed an hour, in the database at ``url``."""
    sql_backend = pytest.importorskip("arcana.queue.sql_backend", reason="the SQL backend is not merged yet")
    database = Database(DatabaseConfig(url=url))
    assert database.prepare() is None
    backend: Any = sql_backend.SqlQueueBackend(database.engine)
    try:
        now, dead = time.time(), []
        for n in range(3):
            backend.enqueue(JobSpec("mail.send", {"n": n}, max_retries=0), now + n)
            [lease] = backend.claim("seeder", 1, now + n, 30.0)
            assert backend.fail(lease, f"smtp down {n}", None, now + n)
            dead.append(lease.job.id)
        backend.enqueue(JobSpec("report.build", run_at=now + 3600), now)
        return dead
    finally:
        backend.close()
        database.close()


def arcana_queue(server: ArcanaServer, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    return subprocess.run(
        [sys.executable, "-m", "arcana.cli", "queue", *args, "--config", str(server.config_path)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def grpc_call(server: ArcanaServer, name: str, request: dict[str, Any], token: str) -> tuple[grpc.StatusCode, Any]:
    method = kernel_descriptors().method(ADMIN_SERVICE + name)
    data = json_format.ParseDict(request, method.input_type()).SerializeToString()
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = channel.unary_unary(f"/{ADMIN_SERVICE}{name}")
        try:
            reply = stub(data, metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, json_format.MessageToDict(method.output_type.FromString(reply))


@pytest.fixture
def server(tmp_path: Path, start_server: Any) -> tuple[ArcanaServer, list[str]]:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    dead = seed(url)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    return start_server(plugins, {"database": {"url": url}}), dead


def test_stats_dead_letters_and_one_job_on_rest_grpc_cli_and_metrics(server: tuple[ArcanaServer, list[str]]) -> None:
    served, dead = server
    admin = admin_headers()

    stats = httpx.get(f"{served.url}/api/v1/admin/jobs", headers=admin).json()
    assert (stats["dead"], stats["delayed"]) == (3, 1)
    assert httpx.get(f"{served.url}/api/v1/admin/jobs").status_code == 401
    listing = httpx.get(f"{served.url}/api/v1/admin/jobs/dead?limit=2", headers=admin).json()
    assert [j["id"] for j in listing["items"]] == [dead[2], dead[1]]
    job = httpx.get(f"{served.url}/api/v1/admin/jobs/{dead[0]}", headers=admin).json()
    assert (job["state"], job["error"], job["type"]) == ("dead", "smtp down 0", "mail.send")

    lines = httpx.get(f"{served.url}/metrics", headers=admin).text.splitlines()
    assert "arcana_queue_dead 3.0" in lines and "arcana_queue_delayed 1.0" in lines

    status, reply = grpc_call(served, "GetQueueStats", {}, mint("ops", ["admin"]))
    assert (status, reply["dead"], reply["delayed"]) == (grpc.StatusCode.OK, "3", "1")
    assert grpc_call(served, "GetJob", {"id": dead[0]}, mint("ops", ["user"]))[0] == grpc.StatusCode.PERMISSION_DENIED

    shown = arcana_queue(served, "show", dead[1], "--json")
    assert shown.returncode == ExitCode.OK and json.loads(shown.stdout)["error"] == "smtp down 1"


def test_replay_and_purge_through_each_edge(server: tuple[ArcanaServer, list[str]]) -> None:
    served, dead = server
    admin = admin_headers()

    replayed = httpx.post(f"{served.url}/api/v1/admin/jobs/dead/replay", json={"ids": [dead[0]]}, headers=admin)
    assert replayed.json() == {"replayed": 1}
    job = httpx.get(f"{served.url}/api/v1/admin/jobs/{dead[0]}", headers=admin).json()
    assert job["state"] != "dead"

    status, reply = grpc_call(served, "PurgeDeadJobs", {"ids": [dead[1]]}, mint("ops", ["admin"]))
    assert (status, reply) == (grpc.StatusCode.OK, {"purged": "1"})
    assert httpx.get(f"{served.url}/api/v1/admin/jobs/{dead[1]}", headers=admin).status_code == 404

    listed = arcana_queue(served, "dead", "--json")
    assert [j["id"] for j in json.loads(listed.stdout)["items"]] == [dead[2]]
    purged = arcana_queue(served, "purge", "--all")
    assert (purged.returncode, purged.stdout) == (ExitCode.OK, "purged 1 dead job\n")
    assert httpx.get(f"{served.url}/api/v1/admin/jobs", headers=admin).json()["dead"] == 0
    assert "admin.jobs_replayed" in served.logs() and "admin.jobs_purged" in served.logs()
