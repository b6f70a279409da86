"""`arcana init DIR`: lay out a deployment folder from the package's own data.

The result serves the example plugins with `arcana serve` run inside DIR and
no flags::

    DIR/arcana.yaml        every key with its default and comment (config/default.yaml)
    DIR/plugins/*.wasm     the example plugins (hello, echo, notes, audit-log)
    DIR/.data/             the SQLite database, created on first serve

Everything comes from package data through importlib.resources, so it works
the same from a wheel and from a checkout. Existing files are never
overwritten unless asked (``force``).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

CONFIG_FILE = "arcana.yaml"
PLUGINS_DIR = "plugins"
DATA_DIR = ".data"
HEADER = """\
# Arcana deployment config, written by `arcana init`.
# `arcana serve` (and migrate, user create, plugin check) run in this folder
# read it: --config FILE wins over ./arcana.yaml, which wins over the built-in
# defaults. Every key below is stated with its default; delete what you do not
# change. Relative paths resolve against this folder. Override single keys
# with ARCANA_<SECTION>__<KEY> environment variables (e.g. ARCANA_SERVER__HTTP_PORT=8081).
"""


class WouldOverwrite(Exception):
    """init found files it would replace; ``paths`` lists them."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(f"would overwrite {', '.join(map(str, paths))}")
        self.paths = paths


def _bundled() -> Traversable:
    return files("arcana") / "bundled"


def default_config_text() -> str:
    """config/default.yaml with its own header (which speaks of the repository) replaced by HEADER."""
    text = (_bundled() / "config" / "default.yaml").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    body = 0
    while body < len(lines) and lines[body].startswith("#"):
        body += 1
    return HEADER + "".join(lines[body:])


def example_plugins() -> dict[str, bytes]:
    """File name -> module, for each bundled example ``<name>/<name>.wasm``."""
    found = {}
    for folder in _bundled().joinpath(PLUGINS_DIR).iterdir():
        wasm = folder / f"{folder.name}.wasm"
        if folder.is_dir() and wasm.is_file():
            found[wasm.name] = wasm.read_bytes()
    return dict(sorted(found.items()))


def planned_files(target: Path) -> dict[Path, bytes]:
    return {
        target / CONFIG_FILE: default_config_text().encode(),
        **{target / PLUGINS_DIR / name: data for name, data in example_plugins().items()},
    }


def init_deployment(target: Path, *, force: bool = False) -> list[Path]:
    """Write the deployment folder; returns the files written. Raises WouldOverwrite unless ``force``."""
    planned = planned_files(target)
    existing = [path for path in planned if path.exists()]
    if existing and not force:
        raise WouldOverwrite(existing)
    for path, data in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(data)
        # A rename, so a watching server never loads a half-written module.
        partial.replace(path)
    (target / DATA_DIR).mkdir(exist_ok=True)
    return list(planned)
