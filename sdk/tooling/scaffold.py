"""Lay out a new plugin folder that builds and passes its own tests at once (`arcana plugin new`).

The files come from the templates shipped in this package (``templates/common``
for every language, ``templates/<language>`` for one), with ``{{name}}``-style
placeholders filled in. An AssemblyScript plugin also gets the SDK as an npm
tarball in ``vendor/`` (:mod:`arcana_sdk.npm_pack`), so it builds wherever the
folder lives, not only inside an Arcana checkout::

    from arcana_sdk.scaffold import new_plugin
    folder = new_plugin("greeter", "zig", Path("."))   # ./greeter/plugin.toml, src/main.zig, tests/, ...

Every refusal raises :class:`ScaffoldError` with the cause and the fix
(:class:`ScaffoldWriteError` when the arguments were fine but writing failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from .npm_pack import pack_guest_sdk, sdk_tarball_name

__all__ = ["LANGUAGES", "ScaffoldError", "ScaffoldWriteError", "check_name", "new_plugin", "plan"]

LANGUAGES = ("assemblyscript", "zig", "c", "python")
# The manifest's rule for plugin names (arcana.manifest.NAME_RE, NAME_FIX), copied because the
# tooling never imports the kernel; tests/sdk/test_scaffold.py holds the two equal.
NAME_RE = re.compile(r"^(?!.*__)[a-z][a-z0-9_-]{0,62}$")
NAME_FIX = (
    "use lowercase letters, digits, '-' and '_' (never two '_' in a row), starting with a letter, at most 63 characters"
)
# The route is /api/v1/<name>/...: these names would put it under a prefix the kernel keeps for itself.
RESERVED_NAMES = frozenset({"auth", "admin"})
_TEMPLATE_SUFFIX = ".tmpl"
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


class ScaffoldError(Exception):
    """A plugin folder cannot be laid out: ``cause; fix``."""

    def __init__(self, cause: str, fix: str) -> None:
        super().__init__(f"{cause}; {fix}")
        self.cause = cause
        self.fix = fix


class ScaffoldWriteError(ScaffoldError):
    """The arguments were fine but the files could not be written (a full disk, no permission)."""


@dataclass(frozen=True)
class PlannedFile:
    """One file of the new folder: its path inside it and its text."""

    path: str
    text: str


def check_name(name: str) -> None:
    """Raise ScaffoldError unless ``name`` is a plugin name the manifest accepts and the route can use."""
    if not NAME_RE.match(name):
        raise ScaffoldError(f"'{name}' is not a valid plugin name", NAME_FIX)
    if name in RESERVED_NAMES:
        raise ScaffoldError(
            f"'{name}' would put the plugin's routes under the kernel's /api/v1/{name}", "choose another name"
        )


def _check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ScaffoldError(f"unknown language '{language}'", f"choose one of {', '.join(LANGUAGES)}")


def _templates() -> Traversable:
    return files("arcana_sdk") / "templates"


def _walk(folder: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    """Every ``*.tmpl`` under ``folder`` as (relative path without the suffix, file)."""
    found: list[tuple[str, Traversable]] = []
    for entry in folder.iterdir():
        rel = f"{prefix}{entry.name}"
        if entry.is_dir():
            found += _walk(entry, rel + "/")
        elif entry.name.endswith(_TEMPLATE_SUFFIX):
            found.append((rel[: -len(_TEMPLATE_SUFFIX)], entry))
    return found


def _fill(text: str, values: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        key = match[1]
        if key not in values:  # a template naming a value nobody sets is a bug in the templates
            raise KeyError(f"template placeholder {{{{{key}}}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(value, text)


def _output_path(rel: str, module: str) -> str:
    """Where a template lands: dot files are shipped without their dot, the test is named for the plugin."""
    if rel == "gitignore":
        return ".gitignore"
    if rel == "tests/test_plugin.py":
        return f"tests/test_{module}.py"
    return rel


def plan(name: str, language: str) -> list[PlannedFile]:
    """The text files of a new ``language`` plugin called ``name``, sorted by path (nothing is written)."""
    check_name(name)
    _check_language(language)
    own = _templates() / language
    values = {
        "name": name,
        "module": name.replace("-", "_"),  # a Python module name for the test file
        "language": {"assemblyscript": "AssemblyScript", "zig": "Zig", "c": "C", "python": "Python"}[language],
        "sdk_tarball": sdk_tarball_name() if language == "assemblyscript" else "",
    }
    values["language_rows"] = _fill((own / "README-rows.md").read_text("utf-8"), values)
    values["language_notes"] = _fill((own / "README-notes.md").read_text("utf-8"), values).rstrip("\n")
    planned = {
        _output_path(rel, values["module"]): _fill(entry.read_text("utf-8"), values)
        for folder in (_templates() / "common", own)
        for rel, entry in _walk(folder)
    }
    return [PlannedFile(path, planned[path]) for path in sorted(planned)]


def new_plugin(name: str, language: str, parent: Path) -> Path:
    """Write the new plugin into ``parent/name`` and return that folder.

    The folder may exist if it is empty; anything in it is never overwritten.
    """
    files_ = plan(name, language)
    folder = Path(parent) / name
    if folder.exists() and not folder.is_dir():
        raise ScaffoldError(f"{folder} exists and is not a folder", "choose another name or --dir")
    if folder.is_dir() and any(folder.iterdir()):
        raise ScaffoldError(f"{folder} already exists and is not empty", "choose another name or --dir, or empty it")
    try:
        for planned in files_:
            target = folder / planned.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(planned.text, encoding="utf-8")
        if language == "assemblyscript":
            pack_guest_sdk(folder / "vendor")
    except OSError as exc:
        raise ScaffoldWriteError(
            f"cannot write {exc.filename or folder}: {exc.strerror}", "choose a folder you can write to (--dir)"
        ) from exc
    return folder
