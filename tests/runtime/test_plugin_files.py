"""What a plugin file must be before it is read: in the folder, a regular file, within the size limit."""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

import pytest

from arcana.config import ArcanaConfig, DatabaseConfig, PluginsConfig, defaults_as_dict
from arcana.errors import ConfigError, FileChanging
from arcana.kernel import Kernel
from arcana.loader import FileRefused, FileRules, in_served_folder, is_plugin_file, plugin_files, read_stable


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    return folder


def test_the_defaults_are_64_mib_and_no_symlinks_out() -> None:
    plugins = ArcanaConfig().plugins
    assert (plugins.max_module_bytes, plugins.follow_symlinks_outside) == (64 * 1024 * 1024, False)
    assert defaults_as_dict()["plugins"]["folder_check_ms"] == PluginsConfig().folder_check_ms == 1000


def test_a_file_within_the_limit_is_read_and_one_byte_more_is_refused_unread(root: Path) -> None:
    (root / "a.wasm").write_bytes(b"x" * 100)
    assert read_stable(root / "a.wasm", FileRules(root, 100)) == b"x" * 100
    with pytest.raises(FileRefused) as refused:
        read_stable(root / "a.wasm", FileRules(root, 99))
    assert str(refused.value.problem) == (
        "file: a.wasm is 100 bytes, above the limit of 99 bytes "
        "(fix: make the module smaller, or raise plugins.max_module_bytes in the config)"
    )


def test_a_huge_sparse_file_costs_a_stat_not_a_read(root: Path) -> None:
    with (root / "huge.wasm").open("wb") as f:
        f.truncate(1 << 40)  # a terabyte that is not there
    with pytest.raises(FileRefused, match="is 1099511627776 bytes, above the limit"):
        read_stable(root / "huge.wasm", FileRules(root, 64 << 20))


def test_a_fifo_is_refused_without_blocking(root: Path) -> None:
    os.mkfifo(root / "pipe.wasm")
    done = threading.Event()

    def read() -> None:
        with pytest.raises(FileRefused, match=re.escape("pipe.wasm is not a regular file")):
            read_stable(root / "pipe.wasm", FileRules(root, 100))
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(10)
    if not done.is_set():  # unblock a reader stuck in open() so the test run can end
        with open(root / "pipe.wasm", "wb"):
            pass
    assert done.is_set()


def test_symlinks_may_stay_inside_the_folder_but_not_lead_out(root: Path, tmp_path: Path) -> None:
    (root / ".builds").mkdir()
    (root / ".builds" / "v1.wasm").write_bytes(b"inside")
    (tmp_path / "elsewhere.wasm").write_bytes(b"outside")
    (root / "in.wasm").symlink_to(".builds/v1.wasm")
    (root / "out.wasm").symlink_to(tmp_path / "elsewhere.wasm")
    rules = FileRules(root, 100)
    assert read_stable(root / "in.wasm", rules) == b"inside"
    outside = re.escape(f"out.wasm is a symlink to {tmp_path / 'elsewhere.wasm'}, outside")
    with pytest.raises(FileRefused, match=outside):
        read_stable(root / "out.wasm", rules)
    assert read_stable(root / "out.wasm", FileRules(root, 100, follow_outside=True)) == b"outside"


def test_the_folder_itself_may_be_a_symlink(tmp_path: Path) -> None:
    release = tmp_path / "releases" / "7"
    release.mkdir(parents=True)
    (release / "a.wasm").write_bytes(b"a")
    link = tmp_path / "plugins"
    link.symlink_to(release)
    assert read_stable(link / "a.wasm", FileRules(link, 10)) == b"a"


def test_a_file_given_from_outside_the_folder_is_read_as_given(root: Path, tmp_path: Path) -> None:
    """`arcana plugin check FILE` reads a file from anywhere."""
    (tmp_path / "mine.wasm").write_bytes(b"m")
    assert read_stable(tmp_path / "mine.wasm", FileRules(root, 10)) == b"m"


def test_a_file_that_changes_while_read_is_reported_as_changing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = root / "a.wasm"
    path.write_bytes(b"12345")
    real_stat = os.stat

    def stat_after_a_write(p: object, *args: object, **kwargs: object) -> os.stat_result:
        if Path(str(p)) == path:
            path.write_bytes(b"1234567")  # a writer at work
        return real_stat(p, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", stat_after_a_write)
    with pytest.raises(FileChanging):
        read_stable(path, FileRules(root, 100))


@pytest.mark.parametrize(
    "relative, served",
    [
        ("a.wasm", True),
        ("sub/a.wasm", True),
        (".builds/a.wasm", False),
        ("sub/node_modules/a.wasm", False),
        (".hidden.wasm", True),  # only folders are skipped, as the scan does
        ("a.toml", False),
    ],
)
def test_the_watcher_and_the_scan_agree_on_what_is_served(root: Path, relative: str, served: bool) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    assert is_plugin_file(path, root) is served
    assert (path in plugin_files(root)) is served


def test_a_plugin_folder_below_a_hidden_folder_is_served(tmp_path: Path) -> None:
    root = tmp_path / ".local" / "plugins"
    assert in_served_folder(root / "a.wasm", root) and not in_served_folder(root / ".x" / "a.wasm", root)


def test_start_refuses_a_missing_plugin_folder_before_opening_the_database(tmp_path: Path) -> None:
    config = dataclasses.replace(
        ArcanaConfig(),
        plugins=PluginsConfig(dir=str(tmp_path / "nope")),
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'k.db'}"),
    )
    kernel = Kernel(config)
    try:
        missing = "^" + re.escape(f"plugin folder {tmp_path / 'nope'} does not exist: create it")
        with pytest.raises(ConfigError, match=missing):
            kernel.start()
    finally:
        kernel.close()
    assert not (tmp_path / "k.db").exists()
