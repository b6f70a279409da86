"""`arcana queue ...` in process: tables, --json, exit codes, on a real SQLite database.

The backend is the in-memory fake (tests/queue_fakes.py) opened
in place of the configured one; the database under it is real, so the
checks the command makes before opening the backend (reachable, migrated)
run for real. ``test_the_sql_backend_end_to_end`` runs the same commands on
the SQL backend itself.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from arcana import cli, queue_cli
from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.edge.jobs_ops import MAX_DEAD_PAGE, MAX_SELECTED_IDS
from arcana.exit_codes import ExitCode
from arcana.queue.types import JobSpec, JobState, Priority, QueueBackend
from queue_fakes import OPERATOR, MemoryQueueBackend

NOW = time.time()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "arcana.yaml"
    path.write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'arcana.db'}"}}))
    return path


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> MemoryQueueBackend:
    fake = MemoryQueueBackend(OPERATOR)

    def open_fake(config: ArcanaConfig, database: Database) -> QueueBackend:
        return fake

    monkeypatch.setattr(queue_cli, "open_queue_backend", open_fake)
    return fake


def arcana(capsys: pytest.CaptureFixture[str], config: Path, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["queue", *argv, "--config", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def test_stats_prints_a_table_and_json(
    capsys: pytest.CaptureFixture[str], config_file: Path, backend: MemoryQueueBackend
) -> None:
    for priority in (Priority.HIGH, Priority.LOW, Priority.LOW):
        backend.enqueue(JobSpec("t", priority=priority), NOW - 1)
    backend.seed_dead("t", "boom", NOW)

    code, table, _ = arcana(capsys, config_file, "stats")
    assert code == ExitCode.OK
    lines = table.splitlines()
    assert lines[0].split() == ["STATE", "JOBS"]
    assert lines[1].split() == ["ready", "3", "(critical", "0,", "high", "1,", "normal", "0,", "low", "2)"]
    assert [line.split() for line in lines[2:]] == [
        ["delayed", "0"],
        ["running", "0"],
        ["dead", "1"],
        ["succeeded", "0"],
    ]
    code, out, _ = arcana(capsys, config_file, "stats", "--json")
    assert json.loads(out) == {
        "ready": {"critical": 0, "high": 1, "normal": 0, "low": 2},
        "delayed": 0,
        "running": 0,
        "dead": 1,
        "succeeded": 0,
    }
    assert backend.call_log[-1] == "close", "the backend is closed when the command ends"


def test_dead_lists_newest_first_and_pages(
    capsys: pytest.CaptureFixture[str], config_file: Path, backend: MemoryQueueBackend
) -> None:
    ids = [backend.seed_dead("mail.send", f"smtp error {n}\ntrace line", NOW - 100 + n) for n in range(3)]

    code, table, _ = arcana(capsys, config_file, "dead", "--limit", "2")
    rows = table.splitlines()
    assert code == ExitCode.OK
    assert rows[0].split()[:4] == ["ID", "TYPE", "ATTEMPTS", "DIED"]
    assert [r.split()[0] for r in rows[1:3]] == [ids[2], ids[1]]
    assert rows[1].split()[1:3] == ["mail.send", "4/4"] and rows[1].endswith("smtp error 2")
    assert rows[3] == "(first 2; more with --offset 2)"
    code, out, _ = arcana(capsys, config_file, "dead", "--offset", "2", "--json")
    listing = json.loads(out)
    assert [j["id"] for j in listing["items"]] == [ids[0]] and (listing["limit"], listing["offset"]) == (50, 2)


@pytest.mark.parametrize("bad", [["--limit", "0"], ["--limit", str(MAX_DEAD_PAGE + 1)], ["--offset", "-1"]])
def test_a_dead_page_out_of_bounds_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], config_file: Path, backend: MemoryQueueBackend, bad: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        arcana(capsys, config_file, "dead", *bad)
    assert exited.value.code == ExitCode.CONFIG
    assert backend.call_log == []


def test_show_prints_one_job_and_an_unknown_id_fails(
    capsys: pytest.CaptureFixture[str], config_file: Path, backend: MemoryQueueBackend
) -> None:
    dead = backend.seed_dead("mail.send", "smtp down", NOW)

    code, out, _ = arcana(capsys, config_file, "show", dead)
    assert code == ExitCode.OK
    fields = dict(line.split(":", 1) for line in out.splitlines())
    assert (fields["state"].strip(), fields["error"].strip(), fields["attempts"].strip()) == ("dead", "smtp down", "4")
    code, out, _ = arcana(capsys, config_file, "show", dead, "--json")
    assert json.loads(out) == backend.jobs[dead].as_json()
    code, out, err = arcana(capsys, config_file, "show", "job-404")
    assert code == ExitCode.FAILED and out == ""
    assert err == "arcana: no job job-404; list dead jobs with `arcana queue dead`\n"


def test_replay_ids_and_purge_all(
    capsys: pytest.CaptureFixture[str], config_file: Path, backend: MemoryQueueBackend
) -> None:
    first, second, third = (backend.seed_dead("t", "boom", NOW - n) for n in range(3))

    assert arcana(capsys, config_file, "replay", first, third) == (ExitCode.OK, "replayed 2 dead jobs\n", "")
    assert [backend.jobs[i].state for i in (first, second, third)] == [JobState.QUEUED, JobState.DEAD, JobState.QUEUED]
    code, out, _ = arcana(capsys, config_file, "purge", "--all", "--json")
    assert (code, json.loads(out)) == (ExitCode.OK, {"purged": 1})
    assert set(backend.jobs) == {first, third}


@pytest.mark.parametrize(
    "argv",
    [
        ["replay"],
        ["purge"],
        ["replay", "--all", "job-1"],
        ["purge", "has space"],
        ["show", "x" * 129],
        ["replay", *(f"job-{n}" for n in range(MAX_SELECTED_IDS + 1))],
    ],
)
def test_a_bad_selection_is_exit_2_and_opens_nothing(
    capsys: pytest.CaptureFixture[str], config_file: Path, backend: MemoryQueueBackend, argv: list[str]
) -> None:
    code, out, err = arcana(capsys, config_file, *argv)
    assert code == ExitCode.CONFIG and out == "" and err.startswith("arcana: ") and err.count("\n") == 1
    assert backend.call_log == []


def test_a_backend_that_is_down_is_exit_4_for_sql_and_3_for_redis(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config_file: Path, backend: MemoryQueueBackend
) -> None:
    backend.down = True
    code, _, err = arcana(capsys, config_file, "stats")
    assert code == ExitCode.DATABASE
    assert err == "arcana: the queue backend (sql) is unavailable: the queue backend is unavailable\n"
    redis_config = tmp_path / "redis.yaml"
    redis_config.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()), "queue": {"backend": "redis"}}))
    assert arcana(capsys, redis_config, "stats")[0] == ExitCode.UNAVAILABLE


def test_an_unreachable_database_is_exit_4_before_the_backend_opens(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, backend: MemoryQueueBackend
) -> None:
    config = tmp_path / "pg.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": "postgresql://nobody@127.0.0.1:1/none"}}))
    code, _, err = arcana(capsys, config, "stats")
    assert code == ExitCode.DATABASE and err.startswith("arcana: cannot reach the database")
    assert backend.call_log == []


def test_the_sql_backend_end_to_end(capsys: pytest.CaptureFixture[str], config_file: Path) -> None:
    """The commands on the real SQL backend (arcana.queue.sql_backend), in the database the config names."""
    sql_backend = pytest.importorskip("arcana.queue.sql_backend", reason="the SQL backend is not merged yet")
    from arcana.config import load_config

    config = load_config(config_file)
    database = Database(config.database)
    assert database.prepare() is None
    store: Any = sql_backend.SqlQueueBackend(database.engine)
    try:
        now = time.time()
        store.enqueue(JobSpec("mail.send", {"to": "a@example.com"}, max_retries=0), now)
        [lease] = store.claim("w-1", 1, now, 30.0)
        assert store.fail(lease, "smtp down", None, now)
        store.enqueue(JobSpec("mail.send", priority=Priority.HIGH), now)
    finally:
        store.close()
        database.close()

    code, out, _ = arcana(capsys, config_file, "dead", "--json")
    [dead] = json.loads(out)["items"]
    assert (code, dead["id"], dead["error"]) == (ExitCode.OK, lease.job.id, "smtp down")
    code, out, _ = arcana(capsys, config_file, "stats", "--json")
    assert json.loads(out)["ready"]["high"] == 1 and json.loads(out)["dead"] == 1
    assert arcana(capsys, config_file, "replay", lease.job.id)[:2] == (ExitCode.OK, "replayed 1 dead job\n")
    code, out, _ = arcana(capsys, config_file, "show", lease.job.id, "--json")
    assert (json.loads(out)["state"], json.loads(out)["attempts"]) == ("queued", 0)
    assert arcana(capsys, config_file, "purge", "--all")[:2] == (ExitCode.OK, "purged 0 dead jobs\n")
