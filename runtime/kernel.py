"""The kernel: owns the registry and the machinery that fills it.

One ``Kernel`` per process. Edges read ``kernel.registry.snapshot``; the
watcher and the admin API call ``kernel.sync``. Loading runs on the thread
pool, so compiling a big module never stalls requests in flight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from arcana.auth.service import AuthService
from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.engine import Engine
from arcana.engine.extism_engine import ExtismEngine
from arcana.errors import ConfigError, PluginLoadError, Problem
from arcana.events import KernelEvents
from arcana.loader import FileChanging, PluginLoader, is_plugin_file, plugin_files
from arcana.registry import LoadFailure, Registry, Snapshot
from arcana_host.capability import HostServices
from arcana_host.registry import Capabilities

logger = logging.getLogger("arcana.kernel")


class Kernel:
    def __init__(
        self, config: ArcanaConfig, engine: Engine | None = None, capabilities: Capabilities | None = None
    ) -> None:
        self.config = config
        self.plugins_dir = config.plugins_dir()
        self.threads = ThreadPoolExecutor(config.executor.threads, thread_name_prefix="arcana-plugin")
        self.events = KernelEvents()
        self.database = Database(config.database)
        not_ready = self.database.prepare()
        if not_ready:
            self.database.close()
            raise ConfigError(f"database: {not_ready}; run `arcana migrate`")
        self.auth = AuthService(config, self.database, self.events)
        services = HostServices(identity=self.auth, database=self.database)
        self.capabilities = capabilities or Capabilities.from_config(config, services)
        self.loader = PluginLoader(config, engine or ExtismEngine(), self.capabilities, self.threads)
        self.registry = Registry()
        self.ready = False
        self._sync_lock = asyncio.Lock()
        self._listeners: list[Callable[[Snapshot], Awaitable[None]]] = []

    def on_change(self, listener: Callable[[Snapshot], Awaitable[None]]) -> None:
        """Call ``listener`` with the new snapshot after every sync (edges keep derived state current)."""
        self._listeners.append(listener)

    async def load_all(self) -> None:
        """The first scan of the plugin folder; the kernel is ready after it."""
        await self.sync(plugin_files(self.plugins_dir))
        self.ready = True

    async def sync(self, paths: list[Path]) -> None:
        """Bring each given plugin file's state in line with the disk."""
        async with self._sync_lock:
            for path in paths:
                await self._sync_one(path)
            for listener in self._listeners:
                await listener(self.registry.snapshot)

    async def _sync_one(self, path: Path) -> None:
        if not path.exists():
            gone = self.registry.remove(path)
            if gone is not None:
                logger.info(
                    "plugin unloaded",
                    extra={"plugin": gone.name, "plugin_version": gone.manifest.version, "source": str(path)},
                )
            return
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            plugin = await loop.run_in_executor(self.threads, self.loader.load, path)
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
        if unchanged and current.manifest == plugin.manifest:
            plugin.pool.retire()
            return
        problems = self.registry.install(plugin)
        if problems:
            plugin.pool.retire()
            self._failed(path, problems, plugin.name)
            return
        logger.info(
            "plugin loaded",
            extra={
                "plugin": plugin.name,
                "plugin_version": plugin.manifest.version,
                "source": str(path),
                "ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    def _failed(self, path: Path, problems: list[Problem], plugin: str | None) -> None:
        self.registry.record_failure(LoadFailure(path, tuple(problems), plugin))
        kept = self.registry.snapshot.plugins.get(plugin) if plugin else None
        logger.error(
            "plugin refused: %s",
            "; ".join(map(str, problems)),
            extra={"plugin": plugin, "source": str(path), "still_serving": kept.manifest.version if kept else None},
        )

    def sidecar_owner(self, path: Path) -> Path | None:
        """A sidecar manifest's change reloads the module beside it."""
        if path.suffix in (".toml", ".pb"):
            wasm = path.with_suffix(".wasm")
            return wasm if wasm.exists() or self._known(wasm) else None
        return path if is_plugin_file(path) else None

    def _known(self, path: Path) -> bool:
        return any(p.source == path for p in self.registry.snapshot.plugins.values())

    def close(self) -> None:
        for plugin in self.registry.snapshot.plugins.values():
            plugin.pool.retire()
        self.capabilities.close()
        self.database.close()
        self.threads.shutdown(wait=False, cancel_futures=True)
