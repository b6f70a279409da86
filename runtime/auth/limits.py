"""Counts failed logins per key in a sliding window (in process; Redis at scale-out)."""

from __future__ import annotations

import threading
import time
from collections import deque


class FailureWindow:
    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _live(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        return hits

    def blocked_for(self, key: str) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        now = time.monotonic()
        with self._lock:
            hits = self._live(key, now)
            return 0.0 if len(hits) < self._limit else hits[0] + self._window - now

    def fail(self, key: str) -> None:
        with self._lock:
            self._live(key, time.monotonic()).append(time.monotonic())
            if len(self._hits) > 100_000:  # bound memory under a spray of keys
                self._hits = {k: v for k, v in self._hits.items() if v}

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)
