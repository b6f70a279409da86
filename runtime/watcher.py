"""Watches the plugin folder and hands changed plugin files to the kernel."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from watchfiles import Change, awatch

from arcana.kernel import Kernel
from arcana.loader import IGNORED_DIRS

logger = logging.getLogger("arcana.watcher")


def _relevant(change: Change, path: str) -> bool:
    return path.endswith((".wasm", ".toml", ".pb")) and not any(part in IGNORED_DIRS for part in Path(path).parts)


async def watch_plugins(kernel: Kernel, stop: asyncio.Event) -> None:
    """Runs until ``stop`` is set; each batch of changes is synced in one go."""
    debounce = kernel.config.plugins.reload_debounce_ms
    async for changes in awatch(
        kernel.plugins_dir,
        watch_filter=_relevant,
        stop_event=stop,
        debounce=debounce,
        step=max(5, debounce // 2),
        recursive=True,
    ):
        targets = sorted({t for _, raw in changes if (t := kernel.sidecar_owner(Path(raw))) is not None})
        if targets:
            await kernel.sync(targets)
