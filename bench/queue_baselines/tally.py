"""Counting finished jobs inside a worker process, including in the children RQ forks per job."""

from __future__ import annotations

import mmap
import multiprocessing
import struct
import time

_LAYOUT = struct.Struct("qdd")  # count, first job's start, last job's end (time.time())


class Tally:
    """Shared by threads, coroutines and forked children alike.

    The counter lives in an anonymous shared mapping and is guarded by a
    process-shared lock, both inherited across ``fork``: a job run in an RQ
    work horse counts in the parent's tally. Costs about a microsecond per
    job, no Redis round trip, so every baseline's no-op stays a no-op.
    """

    def __init__(self) -> None:
        self._mem = mmap.mmap(-1, _LAYOUT.size)
        self._lock = multiprocessing.Lock()

    def hit(self) -> None:
        now = time.time()
        with self._lock:
            count, first, _ = _LAYOUT.unpack_from(self._mem)
            _LAYOUT.pack_into(self._mem, 0, count + 1, now if count == 0 else first, now)

    def read(self) -> tuple[int, float, float]:
        with self._lock:
            count, first, last = _LAYOUT.unpack_from(self._mem)
        return int(count), first, last
