"""Watches the plugin folder and hands changed plugin files to the kernel.

An inotify watch follows the folder's inode, not its path: after
``mv plugins plugins.old && mv plugins.new plugins`` (or a symlink swap) it
kept reporting the old folder and never saw the new one. So the watcher also
checks, every ``plugins.folder_check_ms`` and after every batch, that the path
still leads to the folder it watches; when it does not, it watches the new
folder and re-syncs everything once that watch is in place (so no change made
in between is missed). While the path leads nowhere the loaded plugins keep
serving. A failure of the watch itself is logged and the watch restarted,
never left to die quietly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from watchfiles import Change, awatch

from arcana.kernel import FolderIdentity, Kernel
from arcana.loader import in_served_folder

logger = logging.getLogger("arcana.watcher")
# Pause before watching again after the watch itself failed (the folder vanished while it was being set up...).
RETRY_S = 1.0


def relevant_in(root: Path) -> Callable[[Change, str], bool]:
    """The watch filter: plugin files and sidecars in the folders that the first scan reads (not hidden ones)."""

    def relevant(change: Change, path: str) -> bool:
        return path.endswith((".wasm", ".toml", ".pb", ".schemas.json")) and in_served_folder(Path(path), root)

    return relevant


async def watch_plugins(kernel: Kernel, stop: asyncio.Event) -> None:
    """Runs until ``stop`` is set; each batch of changes is synced in one go."""
    check_s = kernel.config.plugins.folder_check_ms / 1000
    watched = kernel.folder_identity()  # the folder that load_all scanned
    missing_reported = False
    while not stop.is_set():
        current = kernel.folder_identity()
        if current is None:
            if not missing_reported:
                logger.error(
                    "plugin folder %s is gone; the loaded plugins keep serving until a folder is back there",
                    kernel.plugins_dir,
                )
                missing_reported = True
            await _pause(stop, check_s or RETRY_S)
            continue
        if missing_reported or current != watched:
            logger.info("plugin folder %s was replaced; watching the new one", kernel.plugins_dir)
        missing_reported = False
        try:
            await _watch_folder(kernel, stop, current, rescan=current != watched)
            watched = current
        except Exception as exc:  # the watch must outlive any one failure, which is logged
            logger.error("watching %s failed (%s); watching again", kernel.plugins_dir, exc, exc_info=exc)
            await _pause(stop, RETRY_S)


async def _watch_folder(kernel: Kernel, stop: asyncio.Event, identity: FolderIdentity, rescan: bool) -> None:
    """Sync changes until ``stop`` or until the path leads to another folder than ``identity`` (then return).

    With ``rescan``, everything is synced once the watch is in place: the
    first batch (or timeout) comes from an established watch.
    """
    config = kernel.config.plugins
    debounce, check_ms = config.reload_debounce_ms, config.folder_check_ms
    batches = awatch(
        kernel.plugins_dir,
        watch_filter=relevant_in(kernel.plugins_dir),
        stop_event=stop,
        debounce=debounce,
        step=max(5, debounce // 2),
        recursive=True,
        rust_timeout=check_ms or None,
        yield_on_timeout=check_ms > 0,
    )
    async with contextlib.aclosing(batches):  # drop the old watch now, not whenever the generator is collected
        async for changes in batches:
            if rescan:
                await kernel.rescan()
                rescan = False
            targets = sorted({t for _, raw in changes if (t := kernel.sidecar_owner(Path(raw))) is not None})
            if targets:
                await kernel.sync(targets)
            if kernel.folder_identity() != identity:
                return


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
