"""`arcana serve --workers N`: N serving processes on the same ports, and the parent that watches them.

Each worker is a whole `arcana serve` (its own kernel, pools, watcher on the
same plugin folder) started as ``python -m arcana.cli serve ... --worker-index
I``; they bind the REST and gRPC ports with SO_REUSEPORT and the kernel
spreads new connections over them. The parent binds nothing: it checks that
the ports are free (so a clash is the same one-line start-up error as with one
process), upgrades a SQLite schema once (so N processes do not race to create
it), starts the workers and then:

- a worker that exits before it is ready stops the others, and the parent
  exits with that worker's code (the worker printed why);
- a worker that dies later is started again, unless it keeps dying: after
  ``MAX_QUICK_CRASHES`` deaths in a row, each within ``QUICK_CRASH_S`` of its
  start, the parent stops the rest and exits 1, logging why;
- SIGTERM or SIGINT is passed on as SIGTERM (each worker drains gracefully)
  and the parent exits 0 once they have gone.

Workers run in their own process group, so a Ctrl-C at a terminal reaches the
parent only (a second SIGINT would make uvicorn skip its drain), and each asks
the kernel for SIGTERM should the parent die without passing it on.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from arcana.config import MAX_WORKERS, ArcanaConfig
from arcana.exit_codes import ExitCode, StartupFailure

logger = logging.getLogger("arcana.supervisor")
# A worker that dies this soon after it started, this many times in a row, is not restarted again:
# something in its environment is broken and restarting only hides it.
QUICK_CRASH_S = 30.0
MAX_QUICK_CRASHES = 5
# How often the parent looks at its workers when nothing happens.
TICK_S = 0.5
# After SIGTERM a worker has shutdown_grace_s to drain, plus this for the rest of its shutdown; then SIGKILL.
STOP_MARGIN_S = 10.0
_PR_SET_PDEATHSIG = 1


def parse_workers(text: str) -> int:
    """``--workers``: a whole number 1..MAX_WORKERS, or ``auto`` for one per core; ValueError says why not."""
    if text == "auto":
        return min(os.cpu_count() or 1, MAX_WORKERS)
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number 1-{MAX_WORKERS} or 'auto', got {text!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"must be 1-{MAX_WORKERS} (each worker is a whole server process), got {count}")
    return count


def die_with_parent() -> None:
    """Linux: SIGTERM this worker when its parent dies (a SIGKILLed supervisor must not leave it serving)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() == 1:  # the parent was gone before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def report_ready(fd: int | None) -> None:
    """Tell the supervisor this worker serves (one byte on the pipe it passed), once."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, b"r")
        os.close(fd)


def check_before_workers(config: ArcanaConfig, role: str) -> None:
    """What one process checks before binding, done once here: ports free, config sound, schema ready."""
    from arcana.edge.metrics import check_metrics_token
    from arcana.listeners import check_port_free
    from arcana.preflight import check_before_binding, check_database
    from arcana.server import check_open_files

    check_before_binding(config)
    server = config.server
    if role != "worker":
        check_open_files(server)
        check_metrics_token(server)
        for what, port, option in (
            ("HTTP", server.http_port, "--http-port or server.http_port"),
            ("gRPC", server.grpc_port, "--grpc-port or server.grpc_port"),
        ):
            if port == 0:  # each worker would pick a port of its own: nothing would be shared
                raise StartupFailure(
                    ExitCode.CONFIG,
                    f"--workers {server.workers} needs a fixed {what} port, not 0",
                    f"choose one ({option})",
                )
            check_port_free(server.host, port, what, option)
    if server.metrics_port:
        check_metrics_token(server)
        last = server.metrics_port + server.workers - 1
        if last > 65535:
            raise StartupFailure(
                ExitCode.CONFIG,
                f"worker i serves /metrics on server.metrics_port + i, and {last} is past 65535",
                "lower server.metrics_port",
            )
        for index in range(server.workers):
            check_port_free(server.host, server.metrics_port + index, "metrics", "server.metrics_port")
    check_database(config.database)
    _prepare_schema(config)


def _prepare_schema(config: ArcanaConfig) -> None:
    """SQLite: upgrade the schema now, once, rather than in N workers at the same moment."""
    from arcana.database import Database, is_sqlite

    database = Database(config.database)
    try:
        if not (is_sqlite(database.engine) and config.database.auto_migrate):
            return
        not_ready = database.prepare()
        if not_ready:
            raise StartupFailure(ExitCode.DATABASE, not_ready, "check database.url and that the file is writable")
    finally:
        database.close()


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    ready_fd: int | None
    started: float
    ready: bool = False


@dataclass
class Supervisor:
    """Starts ``count`` workers with ``command(index, ready_fd)`` and keeps them running until told to stop."""

    count: int
    command: Callable[[int, int], Sequence[str]]
    stop_timeout_s: float
    clock: Callable[[], float] = time.monotonic
    _workers: dict[int, _Worker] = field(default_factory=dict)
    _quick_crashes: dict[int, int] = field(default_factory=dict)
    _stopping: bool = False

    def run(self) -> int:
        """The exit code of `arcana serve`: 0 after SIGTERM/SIGINT, else why the workers could not serve."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for index in range(self.count):
                self._start(index)
            code = self._watch()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def _start(self, index: int) -> None:
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(list(self.command(index, write_fd)), pass_fds=(write_fd,), process_group=0)
        finally:
            os.close(write_fd)
        self._workers[index] = _Worker(index, proc, read_fd, self.clock())
        logger.info("arcana process started", extra={"worker": index, "pid": proc.pid})

    def _watch(self) -> int:
        while not self._stopping:
            self._read_ready()
            for worker in list(self._workers.values()):
                code = worker.proc.poll()
                if code is None or self._stopping:
                    continue
                outcome = self._died(worker, code)
                if outcome is not None:
                    return outcome
        return int(ExitCode.OK)

    def _read_ready(self) -> None:
        waiting = {w.ready_fd: w for w in self._workers.values() if w.ready_fd is not None}
        if not waiting:
            time.sleep(TICK_S)
            return
        try:
            readable, _, _ = select.select(list(waiting), [], [], TICK_S)
        except InterruptedError:  # a signal: the loop looks at _stopping
            return
        for fd in readable:
            worker = waiting[fd]
            worker.ready = os.read(fd, 1) == b"r"  # b"": it closed the pipe without serving (it exited)
            os.close(fd)
            worker.ready_fd = None
            if worker.ready:
                logger.info("arcana process ready", extra={"worker": worker.index, "pid": worker.proc.pid})

    def _died(self, worker: _Worker, code: int) -> int | None:
        """A worker exited by itself: restart it, or the exit code of the whole server when that is pointless."""
        if worker.ready_fd is not None:  # it may have said so just before it exited
            if select.select([worker.ready_fd], [], [], 0)[0]:
                worker.ready = os.read(worker.ready_fd, 1) == b"r"
            os.close(worker.ready_fd)
            worker.ready_fd = None
        first_start = not worker.ready and worker.index not in self._quick_crashes
        if first_start:
            print(
                f"arcana: worker {worker.index} (pid {worker.proc.pid}) exited with code {code} during start-up; "
                "see its error above",
                file=sys.stderr,
            )
            return code if code > 0 else int(ExitCode.FAILED)
        quick = not worker.ready or self.clock() - worker.started < QUICK_CRASH_S
        crashes = self._quick_crashes.get(worker.index, 0) + 1 if quick else 0
        self._quick_crashes[worker.index] = crashes
        if crashes >= MAX_QUICK_CRASHES:
            logger.error(
                "arcana process keeps dying; stopping the server",
                extra={"worker": worker.index, "exit_code": code, "quick_crashes": crashes, "within_s": QUICK_CRASH_S},
            )
            print(
                f"arcana: worker {worker.index} died {crashes} times in a row within {QUICK_CRASH_S:g} s of starting "
                f"(last exit code {code}); see its errors above",
                file=sys.stderr,
            )
            return int(ExitCode.FAILED)
        logger.warning(
            "arcana process died; starting it again",
            extra={"worker": worker.index, "pid": worker.proc.pid, "exit_code": code, "quick_crashes": crashes},
        )
        self._start(worker.index)
        return None

    def _stop_all(self) -> None:
        """SIGTERM to every worker still running, then wait for each (SIGKILL past the timeout)."""
        running = [w for w in self._workers.values() if w.proc.poll() is None]
        for worker in running:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for worker in running:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("arcana process did not stop; killing it", extra={"worker": worker.index})
                worker.proc.kill()
                worker.proc.wait()
        for worker in self._workers.values():
            if worker.ready_fd is not None:
                os.close(worker.ready_fd)
                worker.ready_fd = None


def supervise(config: ArcanaConfig, role: str, command: Callable[[int, int], Sequence[str]]) -> int:
    """Check once, then run ``config.server.workers`` workers until SIGTERM/SIGINT; the exit code."""
    check_before_workers(config, role)
    supervisor = Supervisor(
        config.server.workers, command, stop_timeout_s=config.server.shutdown_grace_s + STOP_MARGIN_S
    )
    return supervisor.run()
