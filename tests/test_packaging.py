"""The hand-written package list in pyproject.toml covers every package folder.

setuptools cannot discover packages under renamed folders (runtime/ is
`arcana`), so a new subpackage has to be listed by hand; this test names the
one that was forgotten. The wheel test (tests/e2e/test_wheel.py) checks the
built wheel's file list as well.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def package_folders() -> dict[str, Path]:
    """Import name -> folder, for every folder holding an __init__.py under the mapped roots."""
    found: dict[str, Path] = {}
    for name, folder in _setuptools()["package-dir"].items():
        root = ROOT / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found[".".join((name, *rel.parts))] = init.parent
    return found


def test_every_package_folder_is_listed_in_pyproject() -> None:
    listed = set(_setuptools()["packages"])
    on_disk = set(package_folders())
    assert sorted(on_disk - listed) == [], "add these to [tool.setuptools] packages in pyproject.toml"
    assert sorted(listed - on_disk) == [], "listed in pyproject.toml but not a folder with __init__.py"


def test_package_data_links_resolve_in_the_checkout() -> None:
    """The package-data symlinks point at the real folders (a broken link would ship an empty wheel part)."""
    links = {
        ROOT / "runtime" / "bundled" / "config": ROOT / "config",
        ROOT / "runtime" / "bundled" / "plugins": ROOT / "plugins",
        **{ROOT / "sdk" / "tooling" / "guest" / lang: ROOT / "sdk" / lang for lang in ("zig", "c", "assemblyscript")},
    }
    for link, target in links.items():
        assert link.is_symlink() and link.resolve() == target.resolve(), link


def test_nothing_links_outside_the_repository() -> None:
    """Users get the repository (or the wheel) only: a link to the shared folder beside it is dead for them."""
    skip = {".git", ".venv", "node_modules", ".cache", "build", "dist", ".pytest_cache"}
    needle = "../" + "shared"  # spelt apart so that this file does not match itself
    offenders = []
    for path in ROOT.rglob("*"):
        if skip & set(path.relative_to(ROOT).parts) or not path.is_file() or path.is_symlink():
            continue
        if path.suffix in (".md", ".py", ".toml", ".yaml", ".ts", ".zig", ".h", ".json") or path.parent.name == ".ci":
            if needle in path.read_text(errors="replace"):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
