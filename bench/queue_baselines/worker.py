"""One baseline worker process: ``python -m queue_baselines.worker SYSTEM URL PREFIX N CONCURRENCY OUT``.

Runs the system's worker (``queue_baselines.<module>.work``) until ``N`` jobs
ran, then writes ``{"count", "first", "last"}`` (wall-clock seconds of the
first job's run and the last one's) to the file ``OUT`` and ends the process
at once: what the library does on shutdown is not part of the measurement.
SYSTEM is a module name here, optionally with ``:simple`` (RQ's SimpleWorker).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from queue_baselines.tally import Tally

POLL_S = 0.005


def _watch(tally: Tally, n: int, out: Path) -> None:
    while True:
        count, first, last = tally.read()
        if count >= n:
            break
        time.sleep(POLL_S)
    out.write_text(json.dumps({"count": count, "first": first, "last": last}))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def main() -> None:
    system, url, prefix, n, concurrency, out = sys.argv[1:7]
    module_name, _, variant = system.partition(":")
    module = importlib.import_module(f"queue_baselines.{module_name}")
    tally = Tally()
    threading.Thread(target=_watch, args=(tally, int(n), Path(out)), daemon=True).start()
    options = {"fork": False} if variant == "simple" else {}
    module.work(url, prefix, int(concurrency), tally, **options)
    # A worker that stops by itself (RQ's burst mode) returns here: wait for the tally to say all ran.
    threading.Event().wait()


if __name__ == "__main__":
    main()
