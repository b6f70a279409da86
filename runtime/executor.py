"""Runs plugin calls: one instance pool per plugin version, off the event loop.

Each call borrows an idle instance (or makes one from the compiled module),
runs on a thread of its own plugin (Extism releases the GIL while the guest
runs), and gives the instance back only if the call succeeded: a trap,
timeout or out-of-memory discards it so no broken state is reused.

Two bulkheads, both taken before a call takes a thread, both waited on for
a bounded time (``max_queue_wait_ms``, never past the call's deadline) and
then refused with 503 and Retry-After, so nothing queues without bound:

- a per-version semaphore, ``max_concurrency`` from the manifest;
- a per-plugin ``ThreadShare``: every version of a plugin runs on its own
  executor of ``max_threads_per_plugin`` threads, and a thread counts as
  taken until its work really ends, even after the wall-clock guard gave
  up on it. A plugin stuck on a slow backend therefore holds its own
  threads and nobody else's: isolation by construction, where a cap on a
  shared pool would still let a few stuck plugins take every thread.

Before both, the plugin's circuit breaker (``InstancePool.breaker``, one per
plugin name, see ``arcana.resilience``): while it is open a call is refused
at once (CircuitOpen: 503 with Retry-After); a trap, timeout or
out-of-memory counts against it, a success closes a half-open one, and
anything else (a bulkhead refusal, a cancelled call) leaves it as it is.

The guest's own time limit is enforced inside the engine; a wall-clock guard
above it covers host functions that block. A call that answers with a fault
after a host function saved a change (``CallContext.may_have_saved``) says
that the change may have been saved, so a client knows to check before
retrying.

Idle instances do not pile up: each is stamped when it goes back to the
pool, and one idle for longer than ``idle_ttl_s`` is dropped (its memory
freed), down to ``min_idle``. Reuse takes the most recent instance, so the
longest idle sit at the other end and trimming looks only there: a return
that finds the oldest expired trims at once, and the kernel's sweep
(``InstancePool.trim``) covers pools nobody calls. No timer per call.

A handler that has proven short, of a plugin whose host functions are all
quick, runs inline on the event loop instead, under a tight guest time
limit, and is demoted back to the threads when it overruns it, to earn inline
again by a streak twice as long (``arcana.inline`` says why and how).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter, Histogram

from arcana.engine import CompiledModule, Instance
from arcana.errors import CircuitOpen, GuestFault, ModuleRejected, PluginFailed, PluginTimeout, ServiceUnavailable
from arcana.inline import HandlerLane, InlineRule, Watchdog
from arcana.resilience.breaker import CircuitBreaker, Permit
from arcana.types import CallContext

logger = logging.getLogger("arcana.executor")
# Process-wide metric objects are the accepted exception to "no global state": Prometheus collects them.
# outcome: ok | trap | timeout | oom | cancelled (the caller went away) | unavailable (a bulkhead refused) | error
CALLS = Counter("arcana_plugin_calls_total", "Plugin handler calls by outcome", ["plugin", "outcome"])
CALL_SECONDS = Histogram(
    "arcana_plugin_call_seconds",
    "Plugin handler call time, queueing included",
    ["plugin"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Only calls that found no free slot or thread wait; the fast path records nothing here.
POOL_WAIT_SECONDS = Histogram(
    "arcana_plugin_pool_wait_seconds",
    "Time a plugin call waited for a concurrency slot and a thread (calls that had to wait)",
    ["plugin"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
# reason: concurrency (the version's max_concurrency) | threads (the plugin's share of threads)
REJECTED = Counter("arcana_plugin_rejected_total", "Plugin calls refused by a bulkhead (503)", ["plugin", "reason"])
INLINE_CALLS = Counter("arcana_plugin_inline_calls_total", "Plugin calls that ran inline on the event loop", ["plugin"])
INLINE_CHANGES = Counter(
    "arcana_plugin_inline_changes_total",
    "Handlers promoted to run inline, or demoted back to the plugin's threads",
    ["plugin", "change"],
)
# Extra wall-clock time, beyond the guest limit, before the guard gives up.
# Host functions bound their waits by the call's deadline, which is at least
# this much earlier than the guard, so a change a host function commits is
# marked on the call before the guard can answer.
GUARD_GRACE_S = 1.0
# What a refused caller is told to wait at least, in seconds.
MIN_RETRY_AFTER_S = 1.0
# Guest faults that count against the plugin's breaker (a "cancelled" one is its caller's doing).
BREAKER_FAULTS = frozenset({"trap", "timeout", "oom"})
MAYBE_SAVED = "; a change it made may have been saved: check before retrying"
T = TypeVar("T")


@dataclass(frozen=True)
class EffectiveLimits:
    memory_mb: int
    timeout_ms: int
    max_concurrency: int


class _Borrow:
    """One call's hold on an instance, so the guard can cancel or disown it."""

    __slots__ = ("abandoned", "instance")

    def __init__(self) -> None:
        self.instance: Instance | None = None
        self.abandoned = False


class ThreadShare:
    """One plugin's threads: every version of the plugin runs its calls here, and only here.

    A call holds one of ``size`` threads from ``try_take``/``take`` until its
    work really ends (``give_back``, or ``release_after`` when its caller
    stopped waiting first), so the executor's own (unbounded) queue never fills. Taking is
    a plain counter while a thread is free (the hot path); only a call that
    must wait gets a future, and a freed thread is handed to the oldest
    waiter directly.
    """

    def __init__(self, plugin: str, size: int, executor: ThreadPoolExecutor | None = None) -> None:
        self.plugin = plugin
        self.size = size
        # Threads start on first use: a plugin that is never called costs none.
        self._executor = executor or ThreadPoolExecutor(size, thread_name_prefix=f"arcana-{plugin[:24]}")
        self._owned = executor is None
        self._waiters: deque[asyncio.Future[None]] = deque()
        # Threads held right now.
        self.busy = 0

    def try_take(self) -> bool:
        """Hold a thread if one is free and nobody is waiting for it."""
        if self.busy < self.size and not self._waiters:
            self.busy += 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a thread (the caller bounds the wait with ``asyncio.wait_for``)."""
        if self.try_take():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give_back()  # handed a thread just as the wait ended: pass it on
            elif waiter in self._waiters:  # a freed thread may have skipped (and dropped) it already
                self._waiters.remove(waiter)
            raise

    def submit(self, fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn`` on the thread this call holds."""
        try:
            return self._executor.submit(fn, *args)
        except RuntimeError:  # shut down: the plugin was unloaded while this call was admitted
            self.give_back()
            raise ServiceUnavailable(
                f"plugin '{self.plugin}' was unloaded; try again", retry_after=MIN_RETRY_AFTER_S
            ) from None

    def release_after(self, work: Future[T]) -> None:
        """Give the thread back now if ``work`` is done, else from its thread when it ends (abandoned calls)."""
        if work.done():  # takes the future's lock: off the hot path, where ``give_back`` is enough
            self.give_back()
            return
        loop = asyncio.get_running_loop()
        work.add_done_callback(lambda _: _call_soon(loop, self.give_back))

    def give_back(self) -> None:
        """The thread is free again (its work is over)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the thread goes straight to the oldest waiter
                return
        self.busy -= 1

    def close(self) -> None:
        """No new calls; work in flight finishes on the threads it holds."""
        if self._owned:
            self._executor.shutdown(wait=False)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop`` from any thread; nothing is left to give back once the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass


class ThreadShares:
    """Every plugin's ``ThreadShare``, by plugin name, made on first use.

    With ``executor`` every plugin runs on that one caller-owned executor:
    for tools that load plugins but never serve them (``arcana plugin check``).
    """

    def __init__(self, threads_per_plugin: int, executor: ThreadPoolExecutor | None = None) -> None:
        self.threads_per_plugin = threads_per_plugin
        self._executor = executor
        self._shares: dict[str, ThreadShare] = {}
        self._watchdog: Watchdog | None = None

    def watchdog(self, rule: InlineRule) -> Watchdog:
        """The one inline watchdog of every pool on these threads (one loop: one inline call at a time)."""
        if self._watchdog is None:
            self._watchdog = Watchdog(rule.backstop_s)
        return self._watchdog

    def get(self, plugin: str) -> ThreadShare:
        share = self._shares.get(plugin)
        if share is None:
            share = self._shares[plugin] = ThreadShare(plugin, self.threads_per_plugin, self._executor)
        return share

    def drop(self, plugin: str) -> None:
        """The plugin is gone: its threads end once their work does; a new load gets a new share."""
        share = self._shares.pop(plugin, None)
        if share is not None:
            share.close()

    def close(self) -> None:
        shares, self._shares = list(self._shares.values()), {}
        for share in shares:
            share.close()
        if self._watchdog is not None:
            self._watchdog.close()


class InstancePool:
    def __init__(
        self,
        plugin: str,
        version: str,
        compiled: CompiledModule,
        limits: EffectiveLimits,
        share: ThreadShare,
        warm: Instance | None = None,
        max_queue_wait_ms: int = 1000,
        answer_reserve_ms: int = 100,
        breaker: CircuitBreaker | None = None,
        *,
        idle_ttl_s: float = 60.0,
        min_idle: int = 1,
        clock: Callable[[], float] = time.monotonic,
        inline: InlineRule | None = None,
        watchdog: Watchdog | None = None,
        build: str = "",
    ) -> None:
        """``idle_ttl_s``: an instance idle longer is dropped, down to ``min_idle`` (0: idle instances stay).

        ``inline``: the rule for running proven-short handlers on the event loop; None when this
        plugin may not (a host function of its that is not quick, or the operator turned it off).
        ``watchdog``: the process's inline watchdog (``ThreadShares.watchdog``); the pool's own when not given.
        ``build``: the module's content hash (its sha256's first hex digits), so a fault's log line says which build.
        """
        self.plugin = plugin
        self.build = build
        # The plugin's circuit breaker (arcana.resilience): traps, timeouts and OOM count; open refuses at once.
        self.breaker = breaker
        self.version = version
        self.limits = limits
        self._compiled = compiled
        self._share = share
        self._clock = clock
        self._idle_ttl_s = idle_ttl_s
        self._min_idle = min_idle
        self._trim_lock = threading.Lock()  # trimmers only: borrowers and returns never take it
        # (instance, when it went idle); borrowed from and returned to the right, so the left is the oldest.
        self._idle: deque[tuple[Instance, float]] = deque([(warm, clock())] if warm else [])
        self._slots = asyncio.Semaphore(limits.max_concurrency)
        self._max_wait_s = max_queue_wait_ms / 1000
        # Host functions must be done this long before the guest's own limit, so a refusal they
        # answer (e.g. the database's SERVICE_UNAVAILABLE) still reaches the client; at most a
        # tenth of the limit, so a short-lived plugin keeps most of its time for its host calls.
        self._reserve_s = min(answer_reserve_ms, limits.timeout_ms / 10) / 1000
        self._retired = False
        self.in_flight = 0
        self._calls_ok = CALLS.labels(plugin, "ok")
        self._call_seconds = CALL_SECONDS.labels(plugin)
        # The inline path (arcana.inline): each handler's lane, the module's twin compiled with the
        # inline time limit (made on first promotion), and its idle instances (the loop uses one at a time).
        self._inline = inline
        self._own_watchdog = inline is not None and watchdog is None
        self._watchdog = Watchdog(inline.backstop_s) if inline is not None and watchdog is None else watchdog
        self._lanes: dict[str, HandlerLane] = {}
        self._inline_compiled: CompiledModule | None = None
        self._inline_lock = threading.Lock()
        self._inline_idle: list[Instance] = []
        self._inline_used = clock()
        self._inline_calls = INLINE_CALLS.labels(plugin)

    @property
    def idle(self) -> int:
        """Instances ready for reuse (read by the pool gauges on /metrics)."""
        return len(self._idle)

    @property
    def share(self) -> ThreadShare:
        """The plugin's threads this pool runs on (read by the pool gauges on /metrics)."""
        return self._share

    def inline_handlers(self) -> list[str]:
        """The handlers that run inline on the event loop now."""
        return sorted(name for name, lane in self._lanes.items() if lane.inline)

    async def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        timeout_s = self.limits.timeout_ms / 1000
        # The breaker first: an open one refuses before a slot, a thread or an instance is taken.
        permit = None if self.breaker is None else self._permit()
        if self._inline_idle:  # only ever filled for a plugin that may run inline
            lane = self._lanes.get(handler)
            if lane is not None and lane.inline and not self._retired:
                output = self._call_inline(lane, handler, data, context, permit)
                if output is not None:
                    return output
                # It overran the inline bound and was demoted: it runs again, on the threads.
        try:
            if self._slots.locked() or not self._share.try_take():
                await self._admit(context)
            else:
                await self._slots.acquire()  # free: returns at once, no task switch
        except BaseException:
            if permit is not None:
                permit.release()  # a bulkhead refusal says nothing about the plugin's health
            raise
        if context.deadline:
            context.deadline -= self._reserve_s
        self.in_flight += 1
        borrow = _Borrow()
        started = time.perf_counter()
        outcome = "error"
        faulted = False  # a trap, timeout or OOM: what counts against the breaker
        try:
            work = self._share.submit(self._run, borrow, handler, data, context)
            try:
                output = await asyncio.wait_for(asyncio.wrap_future(work), timeout_s + GUARD_GRACE_S)
            except BaseException:
                # The guard gave up or the caller went away: the thread may still be at work.
                self._share.release_after(work)
                raise
            self._share.give_back()  # the work is over: the await returned its result
            outcome = "ok"
            return output
        except TimeoutError:
            outcome, faulted = "timeout", True
            borrow.abandoned = True
            if borrow.instance is not None:
                borrow.instance.cancel()
            raise self._fault(GuestFault("timeout", "the call did not return in time"), handler, context) from None
        except asyncio.CancelledError:
            # The caller went away (a gRPC deadline or cancel): stop the guest and never reuse its instance.
            outcome = "cancelled"
            borrow.abandoned = True
            if borrow.instance is not None:
                borrow.instance.cancel()
            raise
        except GuestFault as fault:
            outcome = fault.kind  # trap | timeout | oom | cancelled
            faulted = fault.kind in BREAKER_FAULTS
            raise self._fault(fault, handler, context) from None
        except ModuleRejected as exc:
            outcome = "trap"
            faulted = True
            raise self._fault(GuestFault("trap", str(exc)), handler, context) from None
        finally:
            self.in_flight -= 1
            self._slots.release()
            if permit is not None:
                if outcome == "ok":
                    permit.success()
                elif faulted:
                    permit.failure()
                else:
                    permit.release()  # cancelled by its caller, or unloaded under it
            (self._calls_ok if outcome == "ok" else CALLS.labels(self.plugin, outcome)).inc()
            self._call_seconds.observe(time.perf_counter() - started)

    def _call_inline(
        self, lane: HandlerLane, handler: str, data: bytes, context: CallContext, permit: Permit | None
    ) -> bytes | None:
        """Run the call on the loop's thread under the inline time limit; None when it overran (now demoted).

        No slot or thread is taken: nothing else runs on the loop meanwhile, and the call never waits.
        """
        try:
            instance = self._inline_idle.pop()
        except IndexError:  # taken meanwhile (a trim from the kernel's sweep)
            return None
        watchdog = self._watchdog
        assert watchdog is not None
        started = time.perf_counter()
        watchdog.arm(instance)
        try:
            output = instance.call(handler, data, context)  # the guest, right here, within the twin's budget
        except GuestFault as fault:
            if fault.kind in ("timeout", "cancelled"):  # the budget, or the watchdog: an overrun
                self._demote(lane, handler, context)  # the instance goes with the fault; the permit stays
                return None
            if permit is not None and fault.kind in BREAKER_FAULTS:
                permit.failure()
            elif permit is not None:
                permit.release()
            CALLS.labels(self.plugin, fault.kind).inc()
            self._call_seconds.observe(time.perf_counter() - started)
            raise self._fault(fault, handler, context) from None
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        finally:
            watchdog.disarm()
        self._call_seconds.observe(time.perf_counter() - started)
        self._calls_ok.inc()
        self._inline_calls.inc()
        if permit is not None:
            permit.success()
        self._inline_used = self._clock()
        if not self._retired:
            self._inline_idle.append(instance)
        return output

    def _demote(self, lane: HandlerLane, handler: str, context: CallContext) -> None:
        lane.demote()
        INLINE_CHANGES.labels(self.plugin, "demoted").inc()
        assert self._inline is not None
        logger.warning(
            "plugin handler overran the inline time limit (%d ms): it runs on the plugin's threads until it "
            "proves short again",
            self._inline.max_ms,
            extra={
                "plugin": self.plugin,
                "plugin_version": self.version,
                "handler": handler,
                "request_id": context.request_id,
            },
        )

    def _permit(self) -> Permit:
        assert self.breaker is not None
        try:
            return self.breaker.admit()
        except CircuitOpen:
            CALLS.labels(self.plugin, "circuit_open").inc()
            raise

    async def _admit(self, context: CallContext) -> None:
        """Take a version slot, then a plugin thread, each waited for within one bounded budget, else 503.

        Only reached when one of them is not free at once (see ``call``):
        only a wait needs wait_for's extra task (measured: 6-15 us a call) or reads the clock.
        """
        waited = time.monotonic()
        budget = self._wait_budget(context, waited)
        if self._slots.locked():
            limit = f"its concurrency limit ({self.limits.max_concurrency})"
            await self._bounded(self._slots.acquire(), budget, limit, "concurrency")
        else:
            await self._slots.acquire()
        try:
            budget -= time.monotonic() - waited
            await self._bounded(self._share.take(), budget, f"its share of threads ({self._share.size})", "threads")
        except BaseException:
            self._slots.release()
            raise
        POOL_WAIT_SECONDS.labels(self.plugin).observe(time.monotonic() - waited)

    def _wait_budget(self, context: CallContext, now: float) -> float:
        """The longest a call may queue: ``max_queue_wait_ms``, and never past its deadline."""
        if context.deadline:
            return min(self._max_wait_s, context.deadline - now)
        return self._max_wait_s

    async def _bounded(self, acquire: Coroutine[object, object, object], budget: float, what: str, reason: str) -> None:
        try:
            if budget <= 0:
                acquire.close()
                raise TimeoutError
            await asyncio.wait_for(acquire, budget)
        except TimeoutError:
            CALLS.labels(self.plugin, "unavailable").inc()
            REJECTED.labels(self.plugin, reason).inc()
            raise ServiceUnavailable(
                f"plugin '{self.plugin}' is at {what}; try again",
                retry_after=max(MIN_RETRY_AFTER_S, self.limits.timeout_ms / 1000),
            ) from None

    def _run(self, borrow: _Borrow, handler: str, data: bytes, context: CallContext) -> bytes:
        try:
            instance = self._idle.pop()[0]
        except IndexError:
            instance = self._compiled.instantiate()
        borrow.instance = instance
        # CPU time, not wall time: under load the thread waits milliseconds for the GIL after the
        # guest returns, which says nothing about how long the guest would hold the loop.
        began = time.thread_time()
        try:
            output = instance.call(handler, data, context)  # a GuestFault drops the instance
        except GuestFault:
            lane = self._lanes.get(handler)
            if lane is not None:
                lane.failed()
            raise
        if self._inline is not None and not borrow.abandoned:
            self._observe(handler, time.thread_time() - began)
        if not borrow.abandoned and not self._retired and len(self._idle) < self.limits.max_concurrency:
            now = self._clock()
            self._idle.append((instance, now))
            if self._idle_ttl_s and self._oldest_idle_since(now) < now - self._idle_ttl_s:
                self.trim(now)
        return output

    def _observe(self, handler: str, guest_s: float) -> None:
        """On the plugin's thread, after a good call: count it towards inline, promote, keep an inline instance."""
        assert self._inline is not None
        lane = self._lanes.get(handler)
        if lane is None:
            lane = self._lanes.setdefault(handler, HandlerLane())
        if lane.observe(guest_s, self._inline):
            self._promote(lane, handler)
        elif lane.inline and not self._inline_idle:
            with self._inline_lock:  # the inline instance went with a fault or a trim: make the next
                self._make_inline_instance(handler)

    def _promote(self, lane: HandlerLane, handler: str) -> None:
        with self._inline_lock:  # several threads can end a streak at once: one promotes
            if lane.inline or lane.barred:
                return
            if not self._make_inline_instance(handler):
                lane.barred = True  # the twin cannot be made: this version stays on its threads
                return
            lane.inline = True
        INLINE_CHANGES.labels(self.plugin, "promoted").inc()
        logger.info(
            "plugin handler runs inline from now on",
            extra={"plugin": self.plugin, "plugin_version": self.version, "handler": handler},
        )

    def _make_inline_instance(self, handler: str) -> bool:
        """Make sure an inline instance is waiting (the twin compiled on first use), off the loop; False if not.

        The caller holds ``_inline_lock``.
        """
        assert self._inline is not None
        if self._inline_idle or self._retired:
            return not self._retired
        try:
            if self._inline_compiled is None:
                self._inline_compiled = self._compiled.inline_twin(self._inline.max_ms)
            instance = self._inline_compiled.instantiate()
        except ModuleRejected as exc:
            logger.warning(
                "plugin handler cannot run inline: %s",
                exc,
                extra={"plugin": self.plugin, "plugin_version": self.version, "handler": handler},
            )
            return False
        self._inline_used = self._clock()
        self._inline_idle.append(instance)
        return True

    def _oldest_idle_since(self, default: float) -> float:
        try:
            return self._idle[0][1]
        except IndexError:  # borrowed meanwhile by another thread
            return default

    def trim(self, now: float | None = None) -> int:
        """Drop the instances idle for longer than ``idle_ttl_s``, keeping ``min_idle``; how many went.

        Safe from any thread: an instance in use is not in the idle deque, so it is never dropped.
        Dropping the last reference frees the instance, as after a trap.
        """
        if not self._idle_ttl_s:
            return 0
        cutoff = (self._clock() if now is None else now) - self._idle_ttl_s
        dropped = 0
        if self._inline_idle and self._inline_used <= cutoff:
            with self._inline_lock:  # unused for a while: the next inline call goes by a thread, which makes another
                dropped += len(self._inline_idle)
                self._inline_idle.clear()
        with self._trim_lock:
            while len(self._idle) > self._min_idle:
                try:
                    entry = self._idle.popleft()
                except IndexError:
                    break
                if entry[1] > cutoff:  # the oldest is still fresh, so are all the others
                    self._idle.appendleft(entry)
                    break
                dropped += 1
                del entry  # the instance's memory goes with its last reference
        return dropped

    def _fault(self, fault: GuestFault, handler: str, context: CallContext) -> Exception:
        maybe_saved = context.may_have_saved
        logger.warning(
            "plugin call failed: %s",
            fault.detail,
            extra={
                "plugin": self.plugin,
                "plugin_version": self.version,
                "build": self.build,
                "handler": handler,
                "fault": fault.kind,
                "request_id": context.request_id,
                "may_have_saved": maybe_saved,
            },
        )
        tail = MAYBE_SAVED if maybe_saved else ""
        if fault.kind == "timeout":
            return PluginTimeout(f"plugin '{self.plugin}' did not answer within {self.limits.timeout_ms} ms{tail}")
        if fault.kind == "oom":
            return PluginFailed(f"plugin '{self.plugin}' ran out of memory ({self.limits.memory_mb} MB limit){tail}")
        return PluginFailed(f"plugin '{self.plugin}' failed while handling the request{tail}")

    def retire(self) -> None:
        """Stop reusing instances; in-flight calls finish on the ones they hold."""
        self._retired = True
        self._idle.clear()
        self._inline_idle.clear()
        if self._own_watchdog and self._watchdog is not None:
            self._watchdog.close()
