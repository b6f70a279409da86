"""Types and lint are part of the suite, so the README's one test command (and CI) runs them.

mypy runs strict (pyproject.toml lists the two exceptions and why) over the
packages as installed: the README installs the checkout in setuptools' strict
editable mode, whose tree of links under build/ is what static tools see.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=False, capture_output=True, text=True)


def test_ruff_finds_no_lint_problems() -> None:
    done = _run("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_tree_is_formatted_as_ruff_formats_it() -> None:
    done = _run("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_finds_no_type_errors_in_the_installed_packages() -> None:
    cache = ROOT / ".cache" / "mypy"
    done = _run("mypy", "--cache-dir", str(cache), "-p", "arcana", "-p", "arcana_host", "-p", "arcana_sdk")
    hint = ""
    if "Can't find package" in done.stdout + done.stderr:
        install = "pip install -e '.[test]' --config-settings editable_mode=strict"
        hint = f"\nmypy cannot see the packages: install with `{install}`"
    assert done.returncode == 0, done.stdout + done.stderr + hint
