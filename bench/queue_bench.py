"""The job queue: Arcana against Dramatiq, SAQ, arq and RQ on the same Redis, one workload, ratios in one run.

    .venv/bin/python bench/queue_bench.py                  # 5,000 jobs, concurrency 8, 3 rounds (~5-7 min)
    .venv/bin/python bench/queue_bench.py --quick          # 1,000 jobs, 1 round (~40 s)
    .venv/bin/python bench/queue_bench.py --only dramatiq,arcana-redis --jobs 20000 --concurrency 16
    .venv/bin/python bench/queue_bench.py --markdown --json queue.json

Workload, identical for every system: enqueue N no-op jobs one by one from
this process with the system's ordinary client (enqueue jobs/s), then start
ONE worker process at the same concurrency and time it draining them
(process jobs/s, from the first job run to the last one done). Each system
gets a key prefix of its own on the same Redis, deleted afterwards.

The baselines (bench/queue_baselines/) count runs in the worker process
itself (a shared-memory tally, no extra Redis round trip per job). Arcana
(bench/queue_baselines/arcana_q.py) runs `arcana serve --role worker` with
a real WebAssembly no-op job handler (bench/plugins/noop_job) and is timed by
polling its backend's stats until every job succeeded. Systems run in
rotated order each round; medians over rounds; the ratio to Dramatiq is
paired per round. Needs the `bench` extra (`pip install -e '.[bench]'`).
Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from queue_baselines import arcana_q  # noqa: E402  (bench/ is on the path only from here)

REDIS_URL = "redis://127.0.0.1:6379/0"
# RQ's default Worker forks a process per job (~100 jobs/s): it gets a tenth of the jobs, the rate is per job.
RQ_FORK_SHARE = 10
RQ_REDELIVERS = "no (moved to the failed registry)"
ARCANA_REDELIVERS = "yes (leased; redelivered when the lease runs out)"


@dataclasses.dataclass(frozen=True)
class System:
    key: str
    label: str
    # Whether a job taken by a worker that dies (SIGKILL) runs again, with the default settings.
    redelivers: str
    # "baseline" (a queue_baselines module, optionally ":simple") or "arcana" (an arcana_q store).
    kind: str
    target: str
    share: int = 1  # runs N // share jobs

    def jobs(self, n: int) -> int:
        return max(100, n // self.share) if self.share > 1 else n


SYSTEMS = (
    System("dramatiq", "Dramatiq (RedisBroker)", "yes (acked after the actor returns)", "baseline", "dramatiq_q"),
    System("saq", "SAQ", "no (default retries=1: a swept job is aborted)", "baseline", "saq_q"),
    System("arq", "arq", "yes (the job stays queued until done)", "baseline", "arq_q"),
    System("rq-simple", "RQ SimpleWorker (1 job at a time)", RQ_REDELIVERS, "baseline", "rq_q:simple"),
    System(
        "rq",
        "RQ Worker (fork per job, 1 at a time)",
        RQ_REDELIVERS,
        "baseline",
        "rq_q",
        share=RQ_FORK_SHARE,
    ),
    System("arcana-redis", "Arcana, Redis backend + wasm plugin", ARCANA_REDELIVERS, "arcana", "redis"),
    System(
        "arcana-sqlite",
        "Arcana, SQL backend on SQLite + plugin",
        ARCANA_REDELIVERS,
        "arcana",
        "sqlite",
    ),
    System(
        "arcana-postgres",
        "Arcana, SQL backend on PostgreSQL + plugin",
        ARCANA_REDELIVERS,
        "arcana",
        "postgres",
    ),
)
GROUPS = {
    "baselines": [s.key for s in SYSTEMS if s.kind == "baseline"],
    "arcana": [s.key for s in SYSTEMS if s.kind == "arcana"],
}


@dataclasses.dataclass
class Outcome:
    system: System
    jobs: int = 0
    enqueue: list[float] = dataclasses.field(default_factory=list)  # jobs/s per round
    process: list[float] = dataclasses.field(default_factory=list)
    ratio: list[float] = dataclasses.field(default_factory=list)  # process / Dramatiq's, same round
    problem: str = ""


# --------------------------------------------------------------------------- one run of one system


def run_baseline(system: System, url: str, n: int, concurrency: int, workdir: Path) -> tuple[float, float]:
    import importlib

    module_name = system.target.partition(":")[0]
    module = importlib.import_module(f"queue_baselines.{module_name}")
    prefix = f"qbench-{system.key}-{os.getpid()}-{secrets.token_hex(3)}"
    out = workdir / "result.json"
    try:
        enqueue_s = module.enqueue(url, prefix, n)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))}
        argv = [sys.executable, "-m", "queue_baselines.worker", system.target, url, prefix, str(n), str(concurrency)]
        with (workdir / "worker.log").open("wb") as log:
            done = subprocess.run(
                [*argv, str(out)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=BENCH,
                timeout=60 + n / 20,
                check=False,
            )
        if done.returncode != 0 or not out.exists():
            tail = (workdir / "worker.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"worker exited with {done.returncode}:\n{tail}")
        result = json.loads(out.read_text())
        if result["count"] != n:
            raise RuntimeError(f"{result['count']} runs counted for {n} jobs")
        return n / enqueue_s, n / (result["last"] - result["first"])
    finally:
        arcana_q.delete_keys(url, f"*{prefix}*")
        if module_name == "rq_q":
            module.cleanup_globals(url, prefix)


def run_arcana(system: System, url: str, n: int, concurrency: int, workdir: Path, wasm: Path) -> tuple[float, float]:
    m = arcana_q.run(system.target, url, n, concurrency, wasm, workdir)
    return n / m.enqueue_s, m.count / m.process_s


# --------------------------------------------------------------------------- the table


def _rate(x: float) -> str:
    return f"{x:,.0f}"


def render(outcomes: list[Outcome], markdown: bool = False) -> str:
    head = [
        "system",
        "jobs",
        "enqueue jobs/s",
        "process jobs/s",
        "process vs Dramatiq",
        "redelivered if its worker dies",
    ]
    rows = []
    for o in outcomes:
        s = o.system
        if o.problem and not o.process:
            rows.append([s.label, "", "", "", "", o.problem])
            continue
        ratio = f"{statistics.median(o.ratio):.2f}x" if o.ratio else ""
        rows.append(
            [
                s.label,
                f"{o.jobs:,}",
                _rate(statistics.median(o.enqueue)),
                _rate(statistics.median(o.process)),
                ratio,
                s.redelivers + (f"; {o.problem}" if o.problem else ""),
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    right = {1, 2, 3, 4}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# --------------------------------------------------------------------------- main


def _environment(url: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    parts = [f"python {platform.python_version()}", f"{os.cpu_count()} cpus (load average {load})"]
    for pkg in ("dramatiq", "saq", "arq", "rq", "redis", "hiredis"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"no {pkg}")
    try:
        import redis

        client = redis.Redis.from_url(url)
        parts.append(f"redis server {client.info('server')['redis_version']}")
        client.close()
    except Exception as exc:  # noqa: BLE001  the line only describes; a dead server is reported per system
        parts.append(f"redis server unreachable ({exc})")
    return ", ".join(parts)


def _choose(only: str | None, parser: argparse.ArgumentParser) -> list[System]:
    if not only:
        return list(SYSTEMS)
    keys: list[str] = []
    for word in only.split(","):
        keys += GROUPS.get(word, [word])
    by_key = {s.key: s for s in SYSTEMS}
    unknown = [k for k in keys if k not in by_key]
    if unknown:
        parser.error(f"unknown system(s) {unknown}; choose from {', '.join([*by_key, *GROUPS])}")
    return [s for s in SYSTEMS if s.key in keys]


def _redis_problem(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"not available: no Redis at {url} ({exc})"
    finally:
        client.close()
    return ""


def _arcana_wasm(systems: list[System]) -> tuple[Path | None, str]:
    """The built plugin, or why the Arcana runs cannot happen (they are then reported, not run)."""
    if not any(s.kind == "arcana" for s in systems):
        return None, ""
    try:
        wasm = arcana_q.plugin_wasm()
        arcana_q.check_ready(wasm)
    except arcana_q.NotAvailable as exc:
        return None, f"not available yet: {exc}"
    return wasm, ""


def main() -> int:
    parser = argparse.ArgumentParser(description="queue benchmark (see bench/README.md)")
    parser.add_argument("--jobs", type=int, help="jobs per system and round (default 5000; --quick 1000)")
    parser.add_argument("--concurrency", type=int, default=8, help="jobs at once in the one worker process (default 8)")
    parser.add_argument("--rounds", type=int, help="rounds, medians reported (default 3; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="1,000 jobs, one round")
    parser.add_argument(
        "--only", help="comma list of systems or groups (baselines, arcana): " + ",".join(s.key for s in SYSTEMS)
    )
    parser.add_argument("--redis-url", default=REDIS_URL, help=f"the Redis every system uses (default {REDIS_URL})")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown too")
    parser.add_argument("--json", type=Path, help="write every figure (per round) to this file")
    args = parser.parse_args()
    n = args.jobs or (1000 if args.quick else 5000)
    rounds = args.rounds or (1 if args.quick else 3)
    systems = _choose(args.only, parser)
    url = args.redis_url

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    env_line = _environment(url)
    print(f"queue bench {stamp}: {n:,} jobs, concurrency {args.concurrency}, {rounds} round(s); {env_line}", flush=True)
    wasm, arcana_problem = _arcana_wasm(systems)
    outcomes = {s.key: Outcome(s, jobs=s.jobs(n)) for s in systems}
    redis_problem = _redis_problem(url)
    for o in outcomes.values():
        if o.system.kind == "arcana" and arcana_problem:
            o.problem = arcana_problem
        elif redis_problem and (o.system.kind == "baseline" or o.system.target == "redis"):
            o.problem = redis_problem
        if o.problem:
            print(f"{o.system.label}: {o.problem}", flush=True)

    started = time.perf_counter()
    for r in range(rounds):
        order = systems[r % len(systems) :] + systems[: r % len(systems)]
        this_round: dict[str, float] = {}
        for s in order:
            o = outcomes[s.key]
            if o.problem:
                continue
            workdir = Path(tempfile.mkdtemp(prefix=f"qbench-{s.key}-"))
            try:
                if s.kind == "baseline":
                    enq, proc = run_baseline(s, url, o.jobs, args.concurrency, workdir)
                else:
                    assert wasm is not None
                    enq, proc = run_arcana(s, url, o.jobs, args.concurrency, workdir, wasm)
            except arcana_q.NotAvailable as exc:
                o.problem = f"not available yet: {exc}"
                print(f"{s.label}: {o.problem}", flush=True)
                continue
            except Exception as exc:  # noqa: BLE001  one failing system must not stop the others; its trace is printed
                o.problem = f"FAILED: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                print(f"{s.label}: FAILED", flush=True)
                traceback.print_exc()
                continue
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            o.enqueue.append(enq)
            o.process.append(proc)
            this_round[s.key] = proc
            print(f"round {r + 1}: {s.label}: enqueue {_rate(enq)} jobs/s, process {_rate(proc)} jobs/s", flush=True)
        if "dramatiq" in this_round:
            for key, proc in this_round.items():
                outcomes[key].ratio.append(proc / this_round["dramatiq"])

    result = list(outcomes.values())
    took = time.perf_counter() - started
    load = os.getloadavg()[0]
    print(f"\n== queue: {n:,} jobs, concurrency {args.concurrency}, {rounds} round(s), {took:.0f} s, load {load:.1f}")
    print(render(result))
    if args.markdown:
        print()
        print(render(result, markdown=True))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "when": stamp,
                    "jobs": n,
                    "concurrency": args.concurrency,
                    "rounds": rounds,
                    "environment": env_line,
                    "systems": [
                        {
                            "key": o.system.key,
                            "label": o.system.label,
                            "jobs": o.jobs,
                            "enqueue_per_s": o.enqueue,
                            "process_per_s": o.process,
                            "process_vs_dramatiq": o.ratio,
                            "problem": o.problem,
                        }
                        for o in result
                    ],
                },
                indent=1,
            )
        )
    return 1 if any(o.problem.startswith("FAILED") for o in result) else 0


if __name__ == "__main__":
    sys.exit(main())
