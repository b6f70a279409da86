"""The kernel: one per process, and the one face that edges, the admin APIs and the CLI use.

Construction does no I/O; ``start`` opens the database (upgrading a SQLite
schema), builds the identity service and the host capabilities, and makes the
loader. Edges call ``kernel.core`` for plugin calls, ``kernel.identity`` for
the kernel's own auth and user routes, and ``plugins_view`` for the admin
listing; the watcher calls ``sync``. Loading runs on the kernel's thread
pool, so compiling a big module never stalls requests in flight; plugin
calls run on each plugin's own threads (``arcana.executor.ThreadShares``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from arcana.auth.service import AuthService
from arcana.config import ArcanaConfig
from arcana.core import RequestCore
from arcana.database import Database
from arcana.engine import Engine
from arcana.errors import CircuitOpen, ConfigError, FileChanging, PluginLoadError, Problem
from arcana.events import PLUGIN_FAILED, PLUGIN_LOADED, PLUGIN_UNLOADED, EventBus, JobsSource
from arcana.executor import ThreadShares
from arcana.loader import SCHEMAS_SIDECAR, PluginLoader, build_id, is_plugin_file, plugin_files
from arcana.queue.backends import open_backend
from arcana.queue.jobs import JobQueue
from arcana.ratelimit import Rate, build_limiter
from arcana.registry import LoadedPlugin, LoadFailure, Registry, Snapshot
from arcana.resilience.breaker import BreakerState
from arcana.resilience.guard import refuse_connects_while_open
from arcana.resilience.service import Resilience, event_payload, redis_breaker_name
from arcana.tracing import Tracing, build_tracing
from arcana.types import Principal
from arcana.views import PluginsView, plugins_view
from arcana_host.registry import Capabilities, HostServices

logger = logging.getLogger("arcana.kernel")
Listener = Callable[[Snapshot], Awaitable[None]]
# Readiness asks the database at most once per READY_CACHE_S and waits at
# most READY_PING_TIMEOUT_S for it: a probe must be cheap and quick, and a
# flood of probes must not become a flood of connections.
READY_CACHE_S = 1.0
READY_PING_TIMEOUT_S = 1.0
# The idle-instance sweep runs every half of executor.idle_instance_ttl_s, within these bounds (seconds).
SWEEP_MIN_S = 1.0
SWEEP_MAX_S = 30.0
# (device, inode) of the plugin folder: it changes when the folder is replaced.
FolderIdentity = tuple[int, int]
# outcome: loaded (first load or reload) | failed (refused; a version already serving keeps serving) | unloaded.
# plugin is "" when a refused file named none. Process-wide, as arcana.executor's metrics.
LOADS = Counter("arcana_plugin_loads_total", "Plugin loads, reloads, refusals and unloads", ["plugin", "outcome"])


class KernelNotStarted(RuntimeError):
    """A kernel service was used before ``Kernel.start`` (a bug in the caller)."""


@dataclass(frozen=True)
class Readiness:
    """What ``/ready`` answers: ready with the plugin count, or why not and when to ask again."""

    ready: bool
    plugins: int
    # Client-safe; the database's own error goes to the log only.
    reason: str = ""
    retry_after_s: int = 1


class DatabaseProbe:
    """Whether the database answers: a ping off the event loop with a timeout, its answer cached.

    At most one ping runs at a time: one stuck on a dead server is waited on
    again by the next probe, never joined by more threads.
    """

    def __init__(
        self,
        ping: Callable[[], str | None],
        timeout_s: float = READY_PING_TIMEOUT_S,
        cache_s: float = READY_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._answer: str | None = None
        self._checked_at: float | None = None
        self._running: asyncio.Future[str | None] | None = None

    @property
    def retry_after_s(self) -> int:
        """A new answer can be had after the cache expires."""
        return max(1, math.ceil(self._cache_s))

    async def problem(self) -> str | None:
        """None when the database answered; else why not (for the log)."""
        if self._checked_at is not None and self._clock() - self._checked_at < self._cache_s:
            return self._answer
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(asyncio.to_thread(self._ping))
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._running), self._timeout_s)
        except TimeoutError:
            answer = f"the database did not answer within {self._timeout_s:g} s"
        if answer != self._answer:
            if answer is None:
                logger.info("database reachable again")
            else:
                logger.warning("database unreachable: %s", answer)
        self._answer, self._checked_at = answer, self._clock()
        return answer


class Kernel:
    def __init__(self, config: ArcanaConfig, engine: Engine | None = None, tracing: Tracing | None = None) -> None:
        """``tracing``: spans through a provider the caller owns (tests); else ``start`` builds it from config."""
        self.config = config
        self.plugins_dir = config.plugins_dir()
        self.bus = EventBus()
        self.registry = Registry()
        # Circuit breakers (per plugin, backend and outbound host) and backend retries; a state change is an event.
        self.resilience = Resilience.from_config(config.resilience)
        self.resilience.on_change(self._breaker_changed)
        server = config.server
        redis_breaker = None
        if server.rate_limit_backend == "redis":
            redis_breaker = self.resilience.backend(redis_breaker_name(server.rate_limit_redis_url))
        limiter = build_limiter(
            server.rate_limit_backend,
            server.rate_limit_redis_url,
            server.rate_limit_max_keys,
            server.rate_limit_key_prefix,
            server.rate_limit_fail_open,
            redis_breaker,
        )
        per_address = Rate.parse(server.per_address_limit)
        self.core = RequestCore(
            self.registry, self.authenticate, limiter, per_address, server.max_in_flight, server.validate_responses
        )
        self.ready = False
        self._engine = engine
        self._threads = ThreadPoolExecutor(config.executor.threads, thread_name_prefix="arcana-load")
        self._shares = ThreadShares(config.executor.max_threads_per_plugin)
        self._database: Database | None = None
        self._jobs: JobQueue | None = None
        self._jobs_lock = threading.Lock()
        self._identity: AuthService | None = None
        self._capabilities: Capabilities | None = None
        self._loader: PluginLoader | None = None
        self._probe: DatabaseProbe | None = None
        self._sync_lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self._subscribed: Snapshot | None = None
        self.tracing = tracing
        self._owns_tracing = False
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Open what the kernel serves from: the database, identity, capabilities, the loader.

        A plugin folder that is not there stops start-up: serving "ready, 0
        plugins" from a typo, with a watcher on nothing, looked like success.
        """
        self._require_plugins_dir()
        if self.tracing is None:
            self.tracing = build_tracing(self.config.tracing)
            self._owns_tracing = self.tracing is not None
        self.core.tracing = self.tracing
        database = Database(self.config.database)
        not_ready = database.prepare()
        if not_ready:
            database.close()
            raise ConfigError(f"database: {not_ready}; run `arcana migrate`")
        self._database = database
        # Auth's queries are not behind a guard: they are refused at once while the database's breaker is open.
        refuse_connects_while_open(database.engine, self.resilience.backend("database"))
        self._probe = DatabaseProbe(database.ping)
        self._identity = AuthService(self.config, database, self.bus)
        services = HostServices(
            identity=self._identity, database=database, jobs=self.jobs, bus=self.bus, resilience=self.resilience
        )
        self._capabilities = Capabilities.from_config(self.config, services)
        if self._engine is None:
            from arcana.engine.factory import kernel_engine  # the engines load native code: only when serving

            self._engine = kernel_engine(self.config)
        self._loader = PluginLoader(
            self.config, self._engine, self._capabilities, self._shares, self.resilience.plugins
        )
        self._wire_events(lambda: self.jobs)

    def _wire_events(self, jobs: JobsSource | None) -> None:
        """Deliver events through ``jobs`` (None: log and listeners only) to the handlers of the current plugins.

        Given the kernel's queue as ``lambda: self.jobs``, the queue is opened only once an event has subscribers.
        """
        self.bus.connect(jobs)
        self.on_change(self._refresh_subscriptions)

    async def _refresh_subscriptions(self, snapshot: Snapshot) -> None:
        self._subscribe_to(snapshot)

    def _subscribe_to(self, snapshot: Snapshot) -> None:
        """Point the bus at ``snapshot``'s [[subscribe]] handlers (built once per snapshot)."""
        if snapshot is not self._subscribed:
            self.bus.use_manifests(p.manifest for p in snapshot.plugins.values())
            self._subscribed = snapshot

    def _plugin_event(self, topic: str, payload: dict[str, Any]) -> None:
        # The table first: a plugin loaded earlier in the same sync already hears about the next one.
        self._subscribe_to(self.registry.snapshot)
        self.bus.emit(topic, payload)

    def _breaker_changed(self, kind: str, name: str, old: BreakerState, new: BreakerState) -> None:
        topic, payload = event_payload(kind, name, old, new)
        self.bus.emit(topic, payload)

    def _require_plugins_dir(self) -> None:
        if self.folder_identity() is not None:
            return
        what = "is not a folder" if self.plugins_dir.exists() else "does not exist"
        raise ConfigError(
            f"plugin folder {self.plugins_dir} {what}: create it, or point --plugins (or plugins.dir in the config) "
            "at the folder that holds the .wasm files"
        )

    def folder_identity(self) -> FolderIdentity | None:
        """(device, inode) of the plugin folder its path leads to now; None when there is no folder there."""
        try:
            st = os.stat(self.plugins_dir)
        except OSError:
            return None
        return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None

    async def readiness(self) -> Readiness:
        """Ready once the first scan is done, while the database answers (checked at most once a second)
        and while its breaker lets calls through.
        """
        plugins = self.plugin_count
        if not self.ready or self._probe is None:
            return Readiness(False, plugins, "the kernel is loading its plugins", 1)
        if await self._probe.problem() is not None:
            return Readiness(False, plugins, "the database is unavailable", self._probe.retry_after_s)
        wait = self._database_breaker_wait()
        if wait:
            return Readiness(False, plugins, "the database is unavailable", wait)
        return Readiness(True, plugins)

    def _database_breaker_wait(self) -> int:
        """Seconds until the database's breaker lets calls through again; 0 when it does.

        Called after a good ping: while the breaker is open the process still
        refuses database work, so it is not ready; once half-open, that good
        ping is the probe that closes it (so an instance no traffic reaches
        still recovers).
        """
        breaker = self.resilience.backend("database")
        state = breaker.state
        if state is BreakerState.CLOSED:
            return 0
        if state is BreakerState.OPEN:
            return max(1, math.ceil(breaker.retry_after()))
        try:
            breaker.admit().success()
        except CircuitOpen as exc:  # another call holds the probe: its answer decides
            return exc.retry_after or 1
        return 0

    @property
    def identity(self) -> AuthService:
        """Login, refresh, logout and user administration (the kernel's own auth routes)."""
        if self._identity is None:
            raise KernelNotStarted("the kernel is not started")
        return self._identity

    @property
    def jobs(self) -> JobQueue:
        """The job queue (its backend per queue.backend): for host functions, events, operators and workers.

        Its backend is opened on first use (from any thread), so a kernel
        whose plugins never touch the queue imports no queue backend.
        """
        if self._database is None:
            raise KernelNotStarted("the kernel is not started")
        with self._jobs_lock:
            if self._jobs is None:
                backend = open_backend(self.config, self._database, self.resilience)
                self._jobs = JobQueue(self.config.queue, backend)
            return self._jobs

    def authenticate(self, authorization: str) -> Principal | None:
        """`Authorization` header -> principal; None without one; Unauthorized when it is not valid."""
        return self.identity.authenticate(authorization)

    @property
    def plugin_count(self) -> int:
        return len(self.registry.snapshot.plugins)

    def plugins_view(self) -> PluginsView:
        """What is loaded and what was refused, for the admin APIs."""
        return plugins_view(self.registry.snapshot, list(self.registry.failures.values()))

    def on_change(self, listener: Listener) -> None:
        """Call ``listener`` with the new snapshot after every sync (edges keep derived state current)."""
        self._listeners.append(listener)

    async def load_all(self) -> None:
        """The first scan of the plugin folder; the kernel is ready after it."""
        await self.sync(plugin_files(self.plugins_dir))
        self.ready = True
        self._start_sweeper()

    def trim_idle(self) -> int:
        """Drop every loaded plugin's instances idle past ``executor.idle_instance_ttl_s``; how many went."""
        return sum(plugin.pool.trim() for plugin in self.registry.snapshot.plugins.values())

    def _start_sweeper(self) -> None:
        """One task on the serving loop trims idle pools, so plugins nobody calls give their memory back too."""
        ttl = self.config.executor.idle_instance_ttl_s
        if ttl and (self._sweeper is None or self._sweeper.done()):
            every = min(SWEEP_MAX_S, max(SWEEP_MIN_S, ttl / 2))
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep(every), name="arcana-idle-sweep")

    async def _sweep(self, every: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            try:
                # Off the loop: freeing many instances' memory takes time, and trimming is safe from any thread.
                await loop.run_in_executor(self._threads, self.trim_idle)
            except RuntimeError:  # the kernel's pool was shut down: the kernel is closing
                return
            except Exception:  # a sweep that fails must not end the sweeping
                logger.exception("idle instance sweep failed")

    async def rescan(self) -> None:
        """Sync every file the kernel knows and every file now in the folder: after the folder was replaced."""
        known = {p.source for p in self.registry.snapshot.plugins.values()} | set(self.registry.failures)
        await self.sync(sorted(known | set(plugin_files(self.plugins_dir))))

    async def sync(self, paths: list[Path]) -> None:
        """Bring each given plugin file's state in line with the disk."""
        async with self._sync_lock:
            for path in paths:
                await self._sync_one(path)
            for listener in self._listeners:
                await listener(self.registry.snapshot)

    async def _sync_one(self, path: Path) -> None:
        if not path.exists():
            if path.is_symlink():  # exists() follows the link: a dangling one is a mistake to report, not a removal
                self._failed(path, [_dangling(path)], None)
                return
            gone = self.registry.remove(path)
            if gone is not None:
                self._shares.drop(gone.name)
                self.resilience.plugins.forget(gone.name)
                extra = {"plugin": gone.name, "plugin_version": gone.manifest.version, "source": str(path)}
                logger.info("plugin unloaded", extra={**extra, "build": build_id(gone.sha256)})
                LOADS.labels(gone.name, "unloaded").inc()
                self._plugin_event(PLUGIN_UNLOADED, {"plugin": gone.name})
            return
        if self._loader is None:
            raise KernelNotStarted("the kernel is not started")
        started = time.perf_counter()
        try:
            plugin = await asyncio.get_running_loop().run_in_executor(self._threads, self._loader.load, path)
        except FileChanging:
            logger.info("plugin file still being written; waiting for it to settle", extra={"source": str(path)})
            return
        except PluginLoadError as exc:
            self._failed(path, exc.problems, exc.plugin)
            return
        except OSError as exc:
            self._failed(path, [Problem("file", f"cannot read: {exc.strerror}")], None)
            return
        current = self.registry.snapshot.plugins.get(plugin.name)
        unchanged = current is not None and current.source == path and current.sha256 == plugin.sha256
        # The module's bytes, and what its sidecars may change: the manifest, the descriptors, the schemas.
        same_sidecars = current is not None and current.manifest == plugin.manifest and _same_rpc(current, plugin)
        if unchanged and same_sidecars and current is not None and current.contract.schemas == plugin.contract.schemas:
            plugin.pool.retire()
            if path in self.registry.failures:
                # The same good build is back: the failure is over (the admin listing drops it), and the
                # log says so, naming the build that serves, as no "plugin loaded" line follows.
                self.registry.clear_failure(path)
                extra = {"plugin": plugin.name, "plugin_version": plugin.manifest.version, "source": str(path)}
                logger.info(
                    "plugin file is back to the serving build", extra={**extra, "build": build_id(current.sha256)}
                )
            return
        problems = self.registry.install(plugin)
        if problems:
            plugin.pool.retire()
            self._failed(path, problems, plugin.name)
            return
        if plugin.pool.breaker is not None:
            # A new version starts with a closed breaker of its own: a fixed plugin serves at once.
            self.resilience.plugins.adopt(plugin.pool.breaker)
        extra = {"plugin": plugin.name, "plugin_version": plugin.manifest.version, "source": str(path)}
        build = {"build": build_id(plugin.sha256), "sha256": plugin.sha256}  # which build is live now
        logger.info("plugin loaded", extra={**extra, **build, "ms": _ms_since(started)})
        LOADS.labels(plugin.name, "loaded").inc()
        self._plugin_event(PLUGIN_LOADED, {"plugin": plugin.name, "version": plugin.manifest.version})

    def _failed(self, path: Path, problems: list[Problem], plugin: str | None) -> None:
        self.registry.record_failure(LoadFailure(path, tuple(problems), plugin))
        kept = self.registry.snapshot.plugins.get(plugin) if plugin else None
        extra = {"plugin": plugin, "source": str(path), "still_serving": kept.manifest.version if kept else None}
        logger.error("plugin refused: %s", "; ".join(map(str, problems)), extra=extra)
        LOADS.labels(plugin or "", "failed").inc()
        self._plugin_event(
            PLUGIN_FAILED, {"plugin": plugin, "source": str(path), "problems": [str(p) for p in problems]}
        )

    def sidecar_owner(self, path: Path) -> Path | None:
        """A sidecar manifest's change reloads the module beside it."""
        if path.suffix in (".toml", ".pb") or path.name.endswith(SCHEMAS_SIDECAR):
            wasm = path.with_name(path.name.removesuffix(SCHEMAS_SIDECAR)).with_suffix(".wasm")
            return wasm if wasm.exists() or self._known(wasm) else None
        return path if is_plugin_file(path, self.plugins_dir) else None

    def _known(self, path: Path) -> bool:
        return any(p.source == path for p in self.registry.snapshot.plugins.values())

    def close(self) -> None:
        if self._sweeper is not None and not self._sweeper.done():
            try:
                self._sweeper.cancel()
            except RuntimeError:  # its loop is closed already: nothing runs it any more
                pass
        for plugin in self.registry.snapshot.plugins.values():
            plugin.pool.retire()
        if self._capabilities is not None:
            self._capabilities.close()
        if self._jobs is not None:  # before the database: the SQL backend runs on its engine
            self._jobs.close()
        if self._database is not None:
            self._database.close()
        self._shares.close()
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._owns_tracing and self.tracing is not None:  # last: spans of the calls above are flushed too
            self.tracing.shutdown()


def _same_rpc(a: LoadedPlugin, b: LoadedPlugin) -> bool:
    return (a.descriptors.files if a.descriptors else ()) == (b.descriptors.files if b.descriptors else ())


def _dangling(path: Path) -> Problem:
    try:
        target = os.readlink(path)
    except OSError:
        target = "a missing file"
    return Problem(
        "file", f"{path.name} is a symlink to {target}, which does not exist", "point it at a module, or remove it"
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
