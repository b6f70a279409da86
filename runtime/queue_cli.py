"""`arcana queue stats|dead|show|replay|purge`: the job queue, read and acted on straight from its backend.

No server is needed: the command opens the backend the config names (the
kernel's database for ``queue.backend: sql``, Redis for ``redis``), as every
worker does. It prints a table, or with ``--json`` what the REST admin API
returns for the same action. Exit codes (``arcana.exit_codes``): 0 done;
1 no such job, or a SQL schema that needs ``arcana migrate``; 2 bad
arguments; 3 Redis unreachable; 4 the database unreachable.

A replay or purge from here emits no ``admin.*`` event (there is no kernel
to emit it, and no signed-in user to name); the REST and gRPC admin APIs do.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arcana.config import ArcanaConfig
from arcana.edge.jobs_ops import DEFAULT_DEAD_PAGE, MAX_DEAD_OFFSET, MAX_DEAD_PAGE, job_id, selection
from arcana.errors import ServiceUnavailable, ValidationFailed
from arcana.exit_codes import ExitCode

if TYPE_CHECKING:
    from arcana.database import Database
    from arcana.queue.jobs import JobQueue
    from arcana.queue.types import QueueBackend

# Columns of the dead-letter table: a long type or error is cut to fit a terminal line.
TYPE_WIDTH, ERROR_WIDTH = 24, 60
Opener = Callable[[ArcanaConfig, "Database"], "QueueBackend"]


def open_queue_backend(config: ArcanaConfig, database: Database) -> QueueBackend:
    """The configured backend, as the server opens it."""
    from arcana.queue.backends import open_backend  # the database layer loads only for queue commands

    return open_backend(config, database)


def add_queue_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser], config_help: str) -> None:
    """``arcana queue ...`` under the command line's subcommands."""
    queue = commands.add_parser(
        "queue",
        help="inspect the job queue; replay or purge dead jobs",
        description="Inspect the job queue and act on its dead letters, straight from the configured backend\n"
        "(queue.backend: the kernel's database, or Redis); no server needs to run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = queue.add_subparsers(dest="queue_command", required=True, metavar="QUEUE_COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help=config_help)
    common.add_argument("--json", action="store_true", help="print JSON (as the REST admin API answers)")

    def action(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        formatter = argparse.RawDescriptionHelpFormatter
        return actions.add_parser(
            name, parents=[common], help=summary, description=description, formatter_class=formatter
        )

    action(
        "stats",
        "jobs per state; ready jobs per priority",
        "Count the jobs in each state, and the ready ones per priority.",
    )
    dead = action(
        "dead",
        "list dead jobs, most recently dead first",
        "List the dead-letter queue (jobs whose retries ran out), most recently dead first, a page at a time.",
    )
    limit_help = f"1-{MAX_DEAD_PAGE} ({DEFAULT_DEAD_PAGE})"
    dead.add_argument("--limit", type=_bounded(1, MAX_DEAD_PAGE), default=DEFAULT_DEAD_PAGE, help=limit_help)
    dead.add_argument("--offset", type=_bounded(0, MAX_DEAD_OFFSET), default=0, help="skip this many (0)")
    action(
        "show", "one job, any state", "Show one job by its id: state, attempts, times, result or last error."
    ).add_argument("id")
    for name, summary in (("replay", "queue dead jobs again, attempts reset"), ("purge", "delete dead jobs")):
        chosen = action(
            name,
            f"{summary}: the IDs given, or --all",
            f"{summary[0].upper()}{summary[1:]}: the dead jobs with the IDs given, or every dead job with --all.",
        )
        chosen.add_argument("ids", nargs="*", metavar="ID")
        chosen.add_argument("--all", action="store_true", help="every dead job")


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"must be an integer {low}-{high}")
        return int(text)

    return parse


def run_queue(args: argparse.Namespace, config: ArcanaConfig, opener: Opener | None = None) -> int:
    """Run one ``arcana queue`` action; the exit code. ``opener``: how to open the backend (tests pass a fake)."""
    from arcana.queue.jobs import JobQueue

    try:
        _check(args)
        with _opened(config, opener or open_queue_backend) as backend:
            return _act(args, JobQueue(config.queue, backend))
    except ValidationFailed as exc:
        return _fail(exc.message, ExitCode.CONFIG)
    except ServiceUnavailable as exc:
        code = ExitCode.DATABASE if config.queue.backend == "sql" else ExitCode.UNAVAILABLE
        return _fail(f"the queue backend ({config.queue.backend}) is unavailable: {exc.message}", code)
    except _NotReady as exc:
        return _fail(f"{exc}; run `arcana migrate`", ExitCode.FAILED)
    except _NoSuchJob as exc:
        return _fail(f"no job {exc}; list dead jobs with `arcana queue dead`", ExitCode.FAILED)


class _NotReady(Exception):
    pass


class _NoSuchJob(Exception):
    pass


def _check(args: argparse.Namespace) -> None:
    """The ids as the admin API checks them (ValidationFailed), before anything is opened."""
    if args.queue_command == "show":
        job_id(args.id)
    elif args.queue_command in ("replay", "purge"):
        if args.all == bool(args.ids):
            raise ValidationFailed("give the IDs of dead jobs, or --all (not both)")
        selection({"all": True} if args.all else {"ids": args.ids})


@contextmanager
def _opened(config: ArcanaConfig, opener: Opener) -> Iterator[QueueBackend]:
    """The backend, on a database checked first (SQL); both closed afterwards."""
    from arcana.database import Database
    from arcana.preflight import check_database

    sql = config.queue.backend == "sql"
    if sql:
        check_database(config.database)  # unreachable: StartupFailure, exit 4 (arcana.cli prints it)
    database = Database(config.database)
    try:
        not_ready = database.prepare() if sql else None
        if not_ready:
            raise _NotReady(not_ready)
        backend = opener(config, database)
        try:
            yield backend
        finally:
            backend.close()
    finally:
        database.close()


def _act(args: argparse.Namespace, jobs: JobQueue) -> int:
    command, as_json = args.queue_command, args.json
    if command == "stats":
        stats = jobs.stats().as_json()
        _print(stats, as_json, _stats_table)
    elif command == "dead":
        dead = jobs.dead(args.limit, args.offset)
        listing = {"items": [j.as_json() for j in dead], "limit": args.limit, "offset": args.offset}
        _print(listing, as_json, _dead_table)
    elif command == "show":
        job = jobs.get(args.id)
        if job is None:
            raise _NoSuchJob(args.id)
        _print(job.as_json(), as_json, _job_lines)
    else:
        ids = None if args.all else list(dict.fromkeys(args.ids))
        count = jobs.replay(ids) if command == "replay" else jobs.purge(ids)
        done = "replayed" if command == "replay" else "purged"
        _print({done: count}, as_json, lambda _: [f"{done} {count} dead job{'' if count == 1 else 's'}"])
    return ExitCode.OK


def _print(data: dict[str, Any], as_json: bool, table: Callable[[dict[str, Any]], list[str]]) -> None:
    print(json.dumps(data, indent=2) if as_json else "\n".join(table(data)))


def _stats_table(stats: dict[str, Any]) -> list[str]:
    ready = stats["ready"]
    per_priority = ", ".join(f"{p} {n}" for p, n in ready.items())
    rows = [("ready", sum(ready.values()), f"({per_priority})")]
    rows += [(state, stats[state], "") for state in ("delayed", "running", "dead", "succeeded")]
    return [f"{'STATE':<10} {'JOBS':>8}"] + [f"{s:<10} {n:>8}  {extra}".rstrip() for s, n, extra in rows]


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cut(text: str | None, width: int) -> str:
    line = (text or "").splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _dead_table(listing: dict[str, Any]) -> list[str]:
    items: list[dict[str, Any]] = listing["items"]
    if not items:
        return ["no dead jobs" + (f" from offset {listing['offset']}" if listing["offset"] else "")]
    width = max(len(j["id"]) for j in items)
    lines = [f"{'ID':<{width}}  {'TYPE':<{TYPE_WIDTH}}  {'ATTEMPTS':>8}  {'DIED (UTC)':<19}  ERROR"]
    for j in items:
        attempts = f"{j['attempts']}/{j['max_retries'] + 1}"
        died = _when(j["finished_at"] or j["updated_at"])
        row = f"{j['id']:<{width}}  {_cut(j['type'], TYPE_WIDTH):<{TYPE_WIDTH}}  {attempts:>8}  {died:<19}  "
        lines.append(row + _cut(j["error"], ERROR_WIDTH))
    if len(items) == listing["limit"]:
        lines.append(f"(first {len(items)}; more with --offset {listing['offset'] + len(items)})")
    return lines


def _job_lines(job: dict[str, Any]) -> list[str]:
    times = ("run_at", "created_at", "updated_at", "finished_at")
    shown = {k: (_when(v) + " UTC" if k in times and v is not None else v) for k, v in job.items()}
    shown["result"] = json.dumps(job["result"])
    return [f"{k + ':':<13} {'-' if v in (None, '') else v}" for k, v in shown.items()]


def _fail(message: str, code: ExitCode) -> int:
    print(f"arcana: {' '.join(message.split())}", file=sys.stderr)
    return int(code)
