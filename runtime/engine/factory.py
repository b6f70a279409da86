"""The kernel's engine and a tool's: Extism for core modules, the component engine for components."""

from __future__ import annotations

import logging
from pathlib import Path

from arcana.config import ArcanaConfig
from arcana.engine import Engine
from arcana.engine.select import SelectingEngine

logger = logging.getLogger("arcana.engine")
MIB = 1024 * 1024


def kernel_engine(config: ArcanaConfig) -> SelectingEngine:
    """The serving kernel's engine: components go through the artifact cache of ``executor``."""
    ex = config.executor

    def components() -> Engine:
        from arcana.engine.artifact_cache import ArtifactCache, CacheFolderRefused
        from arcana.engine.component_engine import ComponentEngine

        if not ex.artifact_cache_dir:
            return ComponentEngine()
        try:
            cache = ArtifactCache(
                Path(ex.artifact_cache_dir),
                ex.artifact_cache_max_mb * MIB,
                ComponentEngine.fingerprint(),
                forbidden=config.plugins_dir(),
            )
        except (CacheFolderRefused, OSError) as exc:  # loud, but components still load (compiled each time)
            logger.error("compiled-artifact cache not used: %s", exc)
            return ComponentEngine()
        return ComponentEngine(cache)

    return SelectingEngine(_extism(), components)


def tool_engine() -> SelectingEngine:
    """An author tool's engine (`arcana plugin check`): no cache, nothing written."""

    def components() -> Engine:
        from arcana.engine.component_engine import ComponentEngine

        return ComponentEngine()

    return SelectingEngine(_extism(), components)


def _extism() -> Engine:
    from arcana.engine.extism_engine import ExtismEngine

    return ExtismEngine()
