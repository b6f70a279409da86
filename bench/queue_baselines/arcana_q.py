"""Arcana's side of the queue benchmark: its own backends, its real worker, a real plugin.

For each backend (Redis, SQL on SQLite, SQL on PostgreSQL) the bench process
enqueues ``n`` jobs of type ``bench.noop`` through ``arcana.queue.jobs.JobQueue``
on that backend (a plugin's ``queue_enqueue`` path minus the guest), then
starts ``arcana serve --role worker --worker-concurrency C`` on the same
store with ``bench/plugins/noop_job`` (a Zig ``[[job]]`` handler returning
``{}``) in its plugin folder, and polls the backend's stats: the clock starts
at the first poll that sees a job leave the ready queue and stops at the one
that sees ``succeeded == n`` (see POLL_S for the resolution).

These parts of the queue land separately; a missing one raises
``NotAvailable`` naming it, so the bench reports "not available yet" for
Arcana and still measures the baselines.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
PLUGIN_SRC = BENCH / "plugins" / "noop_job"
CACHE = BENCH / ".cache"
JOB_TYPE = "bench.noop"
# Stats are polled fast until the first job is claimed (the clock's start), then at a pace that costs
# the machine little (a stats call is ~0.1 ms on Redis, 1-2 ms on SQL with thousands of jobs): the
# end is seen at most POLL_S late, under 1% of a run of a few seconds.
POLL_START_S = 0.002
POLL_S = 0.02
# A worker that makes no progress for this long is stuck: the run fails instead of hanging.
STALL_S = 60.0
PG_HOST, PG_PORT, PG_DATABASE, PG_USERS = "127.0.0.1", 5432, "test", ("postgres", "root")


class NotAvailable(Exception):
    """A part Arcana's run needs is missing (not merged yet, or a service is down)."""


@dataclass
class Measured:
    enqueue_s: float
    process_s: float
    count: int


# --------------------------------------------------------------------------- what must be there


def _source_hash(*dirs: Path) -> str:
    digest = hashlib.sha256()
    for d in dirs:
        for path in sorted(d.rglob("*")):
            if path.is_file() and path.suffix in {".zig", ".toml"} and ".zig-cache" not in path.parts:
                digest.update(str(path.relative_to(d)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def plugin_wasm() -> Path:
    """bench/plugins/noop_job built with `arcana plugin build`, cached in bench/.cache by a hash of its sources."""
    target = CACHE / f"noop_job-{_source_hash(PLUGIN_SRC, ROOT / 'sdk' / 'zig')}.wasm"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    done = subprocess.run(
        [sys.executable, "-m", "arcana.cli", "plugin", "build", str(PLUGIN_SRC), "-o", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise NotAvailable(f"`arcana plugin build {PLUGIN_SRC}` failed: {(done.stderr or done.stdout).strip()[-800:]}")
    tmp.replace(target)
    return target


def check_ready(wasm: Path) -> None:
    """Every piece the Arcana runs need, or NotAvailable naming the first one missing."""
    help_text = subprocess.run(
        [sys.executable, "-m", "arcana.cli", "serve", "--help"], capture_output=True, text=True, check=False
    ).stdout
    for flag in ("--role", "--worker-concurrency"):
        if flag not in help_text:
            raise NotAvailable(f"`arcana serve` has no {flag} option (the worker role)")
    done = subprocess.run(
        [sys.executable, "-m", "arcana.cli", "plugin", "check", str(wasm)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise NotAvailable(
            f"the kernel refuses the [[job]] plugin ({wasm.name}): {(done.stderr or done.stdout).strip()[-500:]}"
        )


# --------------------------------------------------------------------------- stores


@dataclass
class Store:
    """One backend for one run: how the bench reaches it, and how the worker is pointed at it."""

    queue: Any  # arcana.queue.jobs.JobQueue
    worker_env: dict[str, str]


def _import(module: str, name: str) -> Any:
    try:
        return getattr(__import__(module, fromlist=[name]), name)
    except (ImportError, AttributeError) as exc:
        raise NotAvailable(f"{module}.{name} ({exc})") from None


@contextlib.contextmanager
def redis_store(url: str, workdir: Path) -> Iterator[Store]:
    from arcana.config import QueueConfig
    from arcana.queue.jobs import JobQueue

    backend_cls = _import("arcana.queue.redis_backend", "RedisQueueBackend")
    prefix = f"qbench-arcana-{os.getpid()}-{secrets.token_hex(3)}"
    config = QueueConfig(backend="redis", redis_url=url, key_prefix=prefix)
    backend = backend_cls.from_config(config)
    try:
        yield Store(
            JobQueue(config, backend),
            {
                "ARCANA_QUEUE__BACKEND": "redis",
                "ARCANA_QUEUE__REDIS_URL": url,
                "ARCANA_QUEUE__KEY_PREFIX": prefix,
                # The kernel still has its own database (plugins' stores): a file in the run's folder.
                "ARCANA_DATABASE__URL": f"sqlite:///{workdir / 'arcana.db'}",
            },
        )
    finally:
        backend.close()
        delete_keys(url, f"{prefix}*")


@contextlib.contextmanager
def _sql_store(db_url: str, migrate: bool) -> Iterator[Store]:
    from arcana.config import DatabaseConfig, QueueConfig
    from arcana.database import Database
    from arcana.database import migrate as run_migrations
    from arcana.queue.jobs import JobQueue

    backend_cls = _import("arcana.queue.sql_backend", "SqlQueueBackend")
    database = Database(DatabaseConfig(url=db_url))
    try:
        if migrate:
            run_migrations(database.engine)  # PostgreSQL is migrated by the operator (`arcana migrate`)
        elif problem := database.prepare():
            raise NotAvailable(f"the SQLite schema: {problem}")
        config = QueueConfig(backend="sql")
        yield Store(
            JobQueue(config, backend_cls(database.engine)),
            {"ARCANA_QUEUE__BACKEND": "sql", "ARCANA_DATABASE__URL": db_url},
        )
    finally:
        database.close()


@contextlib.contextmanager
def sqlite_store(url: str, workdir: Path) -> Iterator[Store]:
    with _sql_store(f"sqlite:///{workdir / 'arcana.db'}", migrate=False) as store:
        yield store


@contextlib.contextmanager
def postgres_store(url: str, workdir: Path) -> Iterator[Store]:
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        raise NotAvailable(f"psycopg ({exc}): install the postgres extra") from None
    conn, user, errors = None, "", []
    for user in PG_USERS:
        try:
            conn = psycopg.connect(
                host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=user, connect_timeout=3, autocommit=True
            )
            break
        except psycopg.Error as exc:
            errors.append(f"as {user}: {str(exc).strip().splitlines()[0]}")
    if conn is None:
        raise NotAvailable(f"no PostgreSQL at {PG_HOST}:{PG_PORT}/{PG_DATABASE} ({'; '.join(errors)})")
    schema = f"qbench_{os.getpid()}_{secrets.token_hex(3)}"
    with conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            db_url = f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}?options=-csearch_path%3D{schema}"
            with _sql_store(db_url, migrate=True) as store:
                yield store
        finally:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


STORES = {"redis": redis_store, "sqlite": sqlite_store, "postgres": postgres_store}


def delete_keys(url: str, pattern: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        client.close()


# --------------------------------------------------------------------------- the run


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(store: Store, wasm: Path, workdir: Path, concurrency: int) -> subprocess.Popen[bytes]:
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    shutil.copyfile(wasm, plugins / "bench.wasm")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    env.update(
        {
            "ARCANA_PLUGINS__WATCH": "false",
            "ARCANA_LOGGING__LEVEL": "warning",
            **store.worker_env,
        }
    )
    argv = [
        sys.executable,
        "-m",
        "arcana.cli",
        "serve",
        "--role",
        "worker",
        "--worker-concurrency",
        str(concurrency),
        "--plugins",
        str(plugins),
        # A worker should bind nothing; if it does, on ports of its own.
        "--http-port",
        str(_free_port()),
        "--grpc-port",
        str(_free_port()),
    ]
    log = (workdir / "worker.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _log_tail(workdir: Path) -> str:
    path = workdir / "worker.log"
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _check_done(queue: Any, ids: tuple[str, ...]) -> None:
    """The first and last jobs read back as succeeded on their first attempt: the stats told the truth."""
    from arcana.queue.types import JobState

    for job_id in ids:
        job = queue.get(job_id)
        if job is None or job.state != JobState.SUCCEEDED or job.attempts != 1:
            seen = job.as_json() if job is not None else "gone"
            raise RuntimeError(f"job {job_id} should have succeeded on attempt 1: {seen}")


def run(backend: str, url: str, n: int, concurrency: int, wasm: Path, workdir: Path) -> Measured:
    """Enqueue ``n`` no-op jobs on ``backend``, then time one worker process draining them."""
    with STORES[backend](url, workdir) as store:
        queue = store.queue
        queue.stats()  # connect (and warm the pool) before the clock starts
        t0 = time.perf_counter()
        ids = [queue.enqueue(queue.spec(JOB_TYPE, None, owner="bench")).id for _ in range(n)]
        enqueue_s = time.perf_counter() - t0

        stats = queue.stats()
        if sum(stats.ready.values()) != n:
            raise RuntimeError(f"{n} jobs enqueued but the backend reports {stats.as_json()}")
        proc = _worker(store, wasm, workdir, concurrency)
        try:
            started: float | None = None
            seen, last_progress = -1, time.perf_counter()
            while True:
                stats = queue.stats()
                now = time.perf_counter()
                if started is None and (sum(stats.ready.values()) < n or stats.running or stats.succeeded):
                    started = now
                if stats.succeeded >= n:
                    break
                if stats.dead:
                    raise RuntimeError(f"{stats.dead} jobs went dead: {stats.as_json()}\n{_log_tail(workdir)}")
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited with {proc.returncode}:\n{_log_tail(workdir)}")
                if stats.succeeded != seen:
                    seen, last_progress = stats.succeeded, now
                elif now - last_progress > STALL_S:
                    raise RuntimeError(f"no progress for {STALL_S:.0f} s: {stats.as_json()}\n{_log_tail(workdir)}")
                time.sleep(POLL_S if started is not None else POLL_START_S)
            assert started is not None
            _check_done(queue, (ids[0], ids[-1]))
            return Measured(enqueue_s, now - started, stats.succeeded)
        finally:
            _stop(proc)
