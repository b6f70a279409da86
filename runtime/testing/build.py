"""A built module for a path: a .wasm as it is, a plugin source folder built once per process."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path

_built: dict[Path, Path] = {}
_built_lock = threading.Lock()


def plugin_file(path: str | Path) -> Path:
    """A built module for ``path``: the file itself, or a plugin source folder built once per process."""
    path = Path(path).resolve()
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"no plugin file or folder at {path}")
        return path
    with _built_lock:
        if path not in _built:
            from arcana_sdk.build import build_plugin  # the guest toolchains: only when a folder is given

            out = Path(tempfile.mkdtemp(prefix="arcana-testing-build-"))
            atexit.register(shutil.rmtree, out, True)
            _built[path] = build_plugin(path, out / f"{path.name}.wasm")
        return _built[path]
