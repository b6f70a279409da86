"""Construction does no I/O; start() opens what the kernel serves from."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcana.config import ArcanaConfig, DatabaseConfig, PluginsConfig
from arcana.kernel import Kernel, KernelNotStarted


def _config(tmp_path: Path) -> ArcanaConfig:
    (tmp_path / "plugins").mkdir()
    database = DatabaseConfig(url=f"sqlite:///{tmp_path / 'data' / 'k.db'}")
    return ArcanaConfig(database=database, plugins=PluginsConfig(dir=str(tmp_path / "plugins")))


def test_constructing_a_kernel_touches_no_file_and_opens_no_database(tmp_path: Path) -> None:
    kernel = Kernel(_config(tmp_path))
    try:
        assert not (tmp_path / "data").exists()
        with pytest.raises(KernelNotStarted):
            kernel.authenticate("Bearer x")
    finally:
        kernel.close()


def test_start_opens_and_migrates_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCANA_JWT_SECRET", "s" * 40)
    kernel = Kernel(_config(tmp_path))
    try:
        kernel.start()
        assert (tmp_path / "data" / "k.db").is_file()
        assert kernel.authenticate("") is None
    finally:
        kernel.close()
