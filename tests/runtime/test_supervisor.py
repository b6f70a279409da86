"""The `--workers N` supervisor on stand-in workers: small Python processes that say ready and exit as told.

A stand-in gets the pipe to say it is ready on (its one argument) like an
`arcana serve --worker-index I` process; the clock deciding what a quick crash
is comes from the test.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from arcana.supervisor import MAX_QUICK_CRASHES, Supervisor, parse_workers
from fakes import wait_for

# Say ready, then exit with the code given (or serve until SIGTERM when it is "serve").
STAND_IN = """
import os, signal, sys, time
fd, then, starts = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(starts, "a") as f:
    f.write("x")
if then != "fail-at-start":
    os.write(fd, b"r")
if then == "serve" or (then.startswith("serve-after-") and len(open(starts).read()) >= int(then[12:])):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(1)
sys.exit(7)
"""


def _stand_ins(tmp_path: Path, behaviour: Callable[[int], str]) -> Callable[[int, int], Sequence[str]]:
    def command(index: int, ready_fd: int) -> list[str]:
        starts = tmp_path / f"starts-{index}"
        return [sys.executable, "-c", STAND_IN, str(ready_fd), behaviour(index), str(starts)]

    return command


def _starts(tmp_path: Path, index: int) -> int:
    path = tmp_path / f"starts-{index}"
    return len(path.read_text()) if path.exists() else 0


def _sigterm_self_when(predicate: Callable[[], bool]) -> threading.Thread:
    """SIGTERM this process (the supervisor's parent role) once ``predicate`` holds, as an operator would."""

    def run() -> None:
        wait_for(predicate, 60, "the condition to send SIGTERM on")
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_failing_at_start_up_stops_the_others_and_sets_the_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = Supervisor(
        2, _stand_ins(tmp_path, lambda i: "serve" if i == 0 else "fail-at-start"), stop_timeout_s=30
    )
    assert supervisor.run() == 7
    err = capsys.readouterr().err
    assert "worker 1 (pid" in err and "exited with code 7 during start-up" in err
    assert _starts(tmp_path, 1) == 1, "a start-up failure is not retried"
    assert all(w.proc.poll() is not None for w in supervisor._workers.values()), "no worker is left running"


def test_a_worker_that_keeps_dying_soon_after_start_is_given_up_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    supervisor = Supervisor(
        2, _stand_ins(tmp_path, lambda i: "serve" if i == 0 else "exit"), stop_timeout_s=30, clock=lambda: 0.0
    )
    assert supervisor.run() == 1
    assert _starts(tmp_path, 1) == MAX_QUICK_CRASHES
    assert f"worker 1 died {MAX_QUICK_CRASHES} times in a row" in capsys.readouterr().err
    assert all(w.proc.poll() is not None for w in supervisor._workers.values())


def test_a_worker_that_dies_after_serving_a_while_is_restarted_and_sigterm_stops_all(tmp_path: Path) -> None:
    restarts = MAX_QUICK_CRASHES + 2  # more than the quick-crash bound: these were not quick
    clock = itertools.count(step=1000.0)
    supervisor = Supervisor(
        2,
        _stand_ins(tmp_path, lambda i: "serve" if i == 0 else f"serve-after-{restarts}"),
        stop_timeout_s=30,
        clock=lambda: next(clock),
    )
    _sigterm_self_when(lambda: _starts(tmp_path, 1) >= restarts and _starts(tmp_path, 0) == 1)
    assert supervisor.run() == 0
    assert _starts(tmp_path, 1) == restarts
    assert _starts(tmp_path, 0) == 1
    assert all(w.proc.poll() is not None for w in supervisor._workers.values()), "each stopped on its SIGTERM"


@pytest.mark.parametrize("text", ["0", "65", "-1", "two", ""])
def test_a_worker_count_outside_1_to_64_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="1-64"):
        parse_workers(text)


def test_auto_is_one_worker_per_core() -> None:
    assert parse_workers("auto") == min(os.cpu_count() or 1, 64)
    assert parse_workers("3") == 3
