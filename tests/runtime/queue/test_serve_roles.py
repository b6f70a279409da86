"""`arcana serve --role` and `--worker-concurrency`, and the kernel's queue opened on first use."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from arcana import cli
from arcana.config import ArcanaConfig, DatabaseConfig, QueueConfig
from arcana.database import Database
from arcana.errors import ConfigError
from arcana.kernel import Kernel, KernelNotStarted
from arcana.queue import backends
from arcana.queue.guarded_backend import GuardedQueueBackend
from arcana.server import ROLES
from fakes import Kernels
from queue_fakes import MemoryQueueBackend


def serve_args(*extra: str) -> tuple[str, ArcanaConfig]:
    args = cli._parser().parse_args(["serve", *extra])
    return args.role, cli._serve_config(args)


def test_role_defaults_to_all_and_offers_every_server_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert serve_args()[0] == "all"
    for role in ROLES:
        assert serve_args("--role", role)[0] == role


def test_worker_concurrency_flag_overrides_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCANA_QUEUE__WORKER_CONCURRENCY", raising=False)
    assert serve_args()[1].queue.worker_concurrency == QueueConfig().worker_concurrency
    assert serve_args("--worker-concurrency", "3")[1].queue.worker_concurrency == 3


@pytest.mark.parametrize("bad", ["0", "-1", "x", "1.5"])
def test_worker_concurrency_must_be_a_positive_whole_number(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli._parser().parse_args(["serve", "--worker-concurrency", bad])
    assert exited.value.code == 2
    assert "at least 1" in capsys.readouterr().err


def test_an_unknown_role_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["serve", "--role", "both"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_kernel_opens_its_queue_backend_once_at_start_and_closes_it(
    kernels: Kernels, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[MemoryQueueBackend] = []

    def memory(_config: ArcanaConfig, _database: Database) -> MemoryQueueBackend:
        opened.append(MemoryQueueBackend())
        return opened[-1]

    monkeypatch.setitem(backends.BACKENDS, "sql", memory)
    kernel = kernels()  # started: its host functions and event bus hold the queue from the start
    assert len(opened) == 1
    assert kernel.jobs is kernel.jobs
    guarded = kernel.jobs.backend  # behind the database's breaker (arcana.queue.guarded_backend)
    assert isinstance(guarded, GuardedQueueBackend) and guarded.inner is opened[0] and len(opened) == 1
    kernel.close()
    assert opened[0].closed


def test_the_queue_is_not_there_before_the_kernel_starts(tmp_path: Path) -> None:
    with pytest.raises(KernelNotStarted):
        _ = Kernel(ArcanaConfig()).jobs


def test_open_backend_refuses_an_unknown_backend_naming_the_key(tmp_path: Path) -> None:
    # Past the config loader, which refuses it already: a config built in code is not checked there.
    config = dataclasses.replace(ArcanaConfig(), queue=dataclasses.replace(QueueConfig(), backend="mongo"))
    database = Database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'q.db'}"))
    try:
        with pytest.raises(ConfigError, match=r"queue\.backend"):
            backends.open_backend(config, database)
    finally:
        database.close()


def test_open_backend_builds_the_sql_backend_on_the_kernels_database(tmp_path: Path) -> None:
    sql_backend = pytest.importorskip("arcana.queue.sql_backend", reason="the SQL queue backend is not in this tree")
    database = Database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'q.db'}"))
    try:
        backend = backends.open_backend(ArcanaConfig(), database)
        assert isinstance(backend, sql_backend.SqlQueueBackend)
        backend.close()
    finally:
        database.close()
