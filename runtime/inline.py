"""When a plugin call may run on the event loop itself instead of on its plugin's threads.

A call on a plugin thread pays a hop each way (measured: about 60-100 us, more
than a short guest call itself), and that hop is most of the gap between a
plugin route and a native one. So a handler that has proven short runs
*inline*: the guest runs on the loop's own thread, with no hop.

The sandbox promise stays: a plugin never holds the loop for more than a
small bound. Three things keep it:

- **Who may.** Only a plugin whose every linked host function is ``quick``
  (never waits on I/O or on heavy work: today ``log``), so nothing inside the
  call can wait for the loop it runs on, or stall it on a database.
- **Proven short.** A handler starts on its plugin's threads. After
  ``after_calls`` successful calls in a row, each of whose guest run took at
  most half of ``max_ms``, it is promoted.
- **A hard bound.** Inline calls run on a twin of the compiled module with a
  budget of about ``max_ms`` of guest work (the engine stops the guest when
  it is spent, as it does at the plugin's own limit), and a ``Watchdog``
  thread cancels an inline call still running after ``backstop_s`` of wall
  time (what the budget cannot count: one long instruction, a host function).
  A call stopped either way is an overrun: its instance is discarded, the
  handler *demoted* to the plugin's threads, and the call run again there
  with its full time limit. Running it again is safe because a quick host
  function changes nothing a client could see twice but a log line.

A demoted handler may earn inline again, but each demotion doubles the
streak it needs (up to ``2**MAX_DOUBLINGS`` times ``after_calls``), and a
failed call restarts it. Demotion is not for good because a well-behaved
handler can overrun by no fault of its own: its host function's callback into
Python waits for the GIL (up to the interpreter's 5 ms switch interval) while
another thread runs. A hostile one pays for each return with twice the good
behaviour as the last: over ``n`` calls it holds the loop past its share at
most about ``log2(n / after_calls)`` times.

So a plugin that behaves for ten thousand calls and then spins holds the
loop once, for about ``max_ms`` (plus the engine timer's slack), and from
then on spins on its own threads, where its own time limit stops it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

# The watchdog's wall-clock backstop, as a multiple of the bound: loose enough that a thread the OS
# preempted for a few milliseconds is not taken for a spinning guest.
BACKSTOP_FACTOR = 5


@dataclass(frozen=True)
class InlineRule:
    """The operator's rule (``executor.inline_max_ms``, ``executor.inline_after_calls``)."""

    # The guest time limit of an inline call, in milliseconds: the longest a plugin may hold the loop.
    max_ms: int
    # Successful short calls in a row on the plugin's threads before a handler runs inline.
    after_calls: int

    @property
    def short_s(self) -> float:
        """A guest run at most this long (half the bound) counts towards promotion."""
        return self.max_ms / 2000

    @property
    def backstop_s(self) -> float:
        """Wall time after which the watchdog cancels an inline call whatever its budget says."""
        return self.max_ms * BACKSTOP_FACTOR / 1000


# A demoted handler needs ``after_calls * 2**demotions`` short calls to run inline again, this many doublings at most.
MAX_DOUBLINGS = 10


class HandlerLane:
    """Where one handler's calls run: its streak of short calls, and whether it is inline now.

    Written from the plugin's threads (``observe``, ``failed``) and from the
    loop (``demote``) without a lock: a lost update only delays a promotion
    or lets a streak run one call longer.
    """

    __slots__ = ("barred", "demotions", "inline", "streak")

    def __init__(self) -> None:
        self.streak = 0
        self.inline = False
        self.demotions = 0
        # The inline twin cannot be made for this plugin version: it never runs inline.
        self.barred = False

    def observe(self, guest_s: float, rule: InlineRule) -> bool:
        """One successful call on a thread took ``guest_s``; True when the handler has now earned inline."""
        if self.inline or self.barred:
            return False
        if guest_s > rule.short_s:
            self.streak = 0
            return False
        self.streak += 1
        return self.streak >= rule.after_calls << min(self.demotions, MAX_DOUBLINGS)

    def failed(self) -> None:
        """A call on a thread failed (a trap, a timeout): its streak starts again."""
        self.streak = 0

    def demote(self) -> None:
        """An inline call overran the bound: back to the plugin's threads, to earn inline again by a longer streak."""
        self.inline = False
        self.streak = 0
        self.demotions += 1


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Watchdog:
    """Cancels the inline call still running ``backstop_s`` after it began, from a thread of its own.

    At most one inline call runs at a time (the loop's), so arming is two
    attribute writes, no lock and no system call; the thread wakes every half
    backstop (it starts with the first inline call) and takes the GIL only
    then, while the guest it may cancel has released it.
    """

    def __init__(self, backstop_s: float) -> None:
        self._backstop_s = backstop_s
        # (the instance running inline, when its call began); None between calls.
        self._running: tuple[Cancellable, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = 0

    def arm(self, instance: Cancellable) -> None:
        self._running = (instance, time.monotonic())
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="arcana-inline-watchdog", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        self._running = None

    def _watch(self) -> None:
        while not self._stop.wait(self._backstop_s / 2):
            running = self._running
            if running is not None and time.monotonic() - running[1] > self._backstop_s and self._running is running:
                running[0].cancel()  # the guest stops at its next check; the call answers "cancelled"
                self.fired += 1

    def close(self) -> None:
        self._stop.set()
