"""Runs plugin calls: one instance pool per plugin version, off the event loop.

Each call borrows an idle instance (or makes one from the compiled module),
runs on the kernel's bounded thread pool (Extism releases the GIL while the
guest runs), and gives the instance back only if the call succeeded: a trap,
timeout or out-of-memory discards it so no broken state is reused. A
per-version semaphore is the bulkhead (``max_concurrency``); the guest's own
time limit is enforced inside the engine, and a wall-clock guard above it
covers host functions that block.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from arcana.engine import CompiledModule, Instance
from arcana.errors import GuestFault, ModuleRejected, PluginFailed, PluginTimeout, ServiceUnavailable
from arcana.types import CallContext

logger = logging.getLogger("arcana.executor")
# Process-wide metric objects are the accepted exception to "no global state": Prometheus collects them.
CALLS = Counter("arcana_plugin_calls_total", "Plugin handler calls by outcome", ["plugin", "outcome"])
CALL_SECONDS = Histogram(
    "arcana_plugin_call_seconds",
    "Plugin handler call time, queueing included",
    ["plugin"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Extra wall-clock time, beyond the guest limit, before the guard gives up.
GUARD_GRACE_S = 1.0
# Retry-After on the 503 of a plugin at its concurrency limit: slots free as calls end, usually well within a second.
BUSY_RETRY_AFTER_S = 1


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


class InstancePool:
    def __init__(
        self,
        plugin: str,
        version: str,
        compiled: CompiledModule,
        limits: EffectiveLimits,
        threads: ThreadPoolExecutor,
        warm: Instance | None = None,
    ) -> None:
        self.plugin = plugin
        self.version = version
        self.limits = limits
        self._compiled = compiled
        self._threads = threads
        self._idle: deque[Instance] = deque([warm] if warm else [])
        self._slots = asyncio.Semaphore(limits.max_concurrency)
        self._retired = False
        self.in_flight = 0

    async def call(self, handler: str, data: bytes, context: CallContext) -> bytes:
        timeout_s = self.limits.timeout_ms / 1000
        try:
            if self._slots.locked():  # only a wait needs wait_for's extra task (measured: 6-15 us a call)
                await asyncio.wait_for(self._slots.acquire(), timeout_s)
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise ServiceUnavailable(
                f"plugin '{self.plugin}' is at its concurrency limit ({self.limits.max_concurrency}); try again",
                retry_after=BUSY_RETRY_AFTER_S,
            ) from None
        self.in_flight += 1
        borrow = _Borrow()
        started = time.perf_counter()
        outcome = "error"
        try:
            loop = asyncio.get_running_loop()
            job = loop.run_in_executor(self._threads, self._run, borrow, handler, data, context)
            try:
                output = await asyncio.wait_for(job, timeout_s + GUARD_GRACE_S)
                outcome = "ok"
                return output
            except TimeoutError:
                outcome = "timeout"
                borrow.abandoned = True
                if borrow.instance is not None:
                    borrow.instance.cancel()
                raise self._fault(GuestFault("timeout", "the call did not return in time"), handler) from None
            except GuestFault as fault:
                raise self._fault(fault, handler) from None
            except ModuleRejected as exc:
                raise self._fault(GuestFault("trap", str(exc)), handler) from None
        finally:
            self.in_flight -= 1
            self._slots.release()
            CALLS.labels(self.plugin, outcome).inc()
            CALL_SECONDS.labels(self.plugin).observe(time.perf_counter() - started)

    def _run(self, borrow: _Borrow, handler: str, data: bytes, context: CallContext) -> bytes:
        try:
            instance = self._idle.pop()
        except IndexError:
            instance = self._compiled.instantiate()
        borrow.instance = instance
        output = instance.call(handler, data, context)  # a GuestFault drops the instance
        if not borrow.abandoned and not self._retired and len(self._idle) < self.limits.max_concurrency:
            self._idle.append(instance)
        return output

    def _fault(self, fault: GuestFault, handler: str) -> Exception:
        logger.warning(
            "plugin call failed: %s",
            fault.detail,
            extra={"plugin": self.plugin, "plugin_version": self.version, "handler": handler, "fault": fault.kind},
        )
        if fault.kind == "timeout":
            return PluginTimeout(f"plugin '{self.plugin}' did not answer within {self.limits.timeout_ms} ms")
        if fault.kind == "oom":
            return PluginFailed(f"plugin '{self.plugin}' ran out of memory ({self.limits.memory_mb} MB limit)")
        return PluginFailed(f"plugin '{self.plugin}' failed while handling the request")

    def retire(self) -> None:
        """Stop reusing instances; in-flight calls finish on the ones they hold."""
        self._retired = True
        self._idle.clear()
