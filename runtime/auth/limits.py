"""Failed logins per key in a sliding window, in bounded memory (in process; Redis at scale-out).

Memory is bounded whatever arrives. A key is stored as a 16-byte BLAKE2b
digest (an email never stays in memory, and its length stops mattering),
with at most ``limit`` failure times: a key is blocked once its ``limit``-th
most recent failure is still inside the window, so older ones never matter.
At most ``max_keys`` keys are tracked, kept in the order they last failed
(an ``OrderedDict``): windows that have run out are dropped from the front,
and when the table is still full the key that failed least recently is
evicted. Every call is O(limit), independent of how many keys are tracked.

Why evicting the oldest key is safe: an attacker could spray distinct
emails to push a victim's per-account window out and so reset it. That
spray is itself made of failed logins, counted per client address (a
separate window, so the spray cannot evict its own address's count before
that address is blocked, and IPv6 addresses are counted per /64, see
``address_key``). Resetting one victim's count takes ``max_keys`` fresh
failures, i.e. ``max_keys / login_failures_per_address`` addresses inside
one window, each failure costing an Argon2 run, and buys only
``login_failures_per_account`` more guesses. The alternative when full,
refusing to track new keys, would stop counting exactly the accounts under
attack.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
import threading
import time
from collections import OrderedDict

DEFAULT_MAX_KEYS = 50_000
# An address that is not an IP (a proxy's label, "unknown") is cut to this length.
MAX_ADDRESS_CHARS = 64


_TIME = struct.Struct("d")


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _time_at(hits: bytes, index: int) -> float:
    """One failure time out of a key's packed times (doubles: a tuple of floats takes three times the memory)."""
    return float(_TIME.unpack_from(hits, index * _TIME.size if index >= 0 else len(hits) + index * _TIME.size)[0])


class FailureWindow:
    """At most ``limit`` failures per key within ``window_s`` seconds; ``limit`` 0 turns the check off."""

    def __init__(self, limit: int, window_s: float, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._limit = limit
        self._window = window_s
        self._max_keys = max_keys
        # digest -> the key's most recent failure times (monotonic, packed doubles), oldest first, at most `limit`.
        self._hits: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many keys are tracked now (never more than ``max_keys``)."""
        return len(self._hits)

    def blocked_for(self, key: str) -> float:
        """Seconds until `key` may try again (0 when it may now)."""
        if not self._limit:
            return 0.0
        digest, now = _digest(key), time.monotonic()
        with self._lock:
            hits = self._hits.get(digest, b"")
        if len(hits) < self._limit * _TIME.size:
            return 0.0
        return max(0.0, _time_at(hits, 0) + self._window - now)

    def fail(self, key: str) -> None:
        if not self._limit:
            return
        digest, now = _digest(key), time.monotonic()
        with self._lock:
            hits = self._hits.pop(digest, b"")
            self._expire(now)
            if len(self._hits) >= self._max_keys:
                self._hits.popitem(last=False)  # the key that failed least recently
            self._hits[digest] = (hits + _TIME.pack(now))[-self._limit * _TIME.size :]

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(_digest(key), None)

    def _expire(self, now: float) -> None:
        """Drop keys whose newest failure left the window; the front failed least recently, so stop at a live one."""
        while self._hits:
            digest, hits = next(iter(self._hits.items()))
            if _time_at(hits, -1) > now - self._window:
                return
            del self._hits[digest]


def address_key(address: str) -> str:
    """The per-address counting key: IPv6 by its /64 (one host's usual allocation), IPv4 as is.

    Both edges name peers differently ("10.0.0.1" on REST, "ipv4:10.0.0.1"
    or "ipv6:[::1]" on gRPC); the same client must count once, whichever it uses.
    """
    text = address.removeprefix("ipv4:").removeprefix("ipv6:").strip("[]")
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return address[:MAX_ADDRESS_CHARS]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
