"""docs/host-abi.md cannot drift: its function table against the catalogue, its version against the kernel's."""

from __future__ import annotations

import re
from pathlib import Path

from arcana.loader import host_abi_problem
from arcana.types import HOST_ABI_VERSION, HOST_NAMESPACE
from arcana_host.catalog import CATALOG, KNOWN_GRANTS

DOC = Path(__file__).resolve().parents[2] / "docs" / "host-abi.md"
TEXT = DOC.read_text()
# | `function` | `grant` | request | reply |
ROWS = re.findall(r"^\| `([a-z_]+)` \| `([a-z_.]+)` \|", TEXT.split("## Functions", 1)[1], flags=re.M)


def test_every_catalogued_function_is_documented_once_with_its_grant_and_nothing_else() -> None:
    names = [name for name, _ in ROWS]
    assert len(names) == len(set(names))
    assert dict(ROWS) == dict(CATALOG)


def test_the_grants_without_functions_are_mentioned() -> None:
    for grant in KNOWN_GRANTS - set(CATALOG.values()):
        assert f"`{grant}`" in TEXT, grant


def test_the_namespace_and_the_version_are_the_kernels() -> None:
    assert f"**`{HOST_NAMESPACE}`**" in TEXT
    assert f"**host ABI {HOST_ABI_VERSION}**" in TEXT


def test_the_refusal_shown_is_the_loaders() -> None:
    problem = host_abi_problem(HOST_ABI_VERSION + 1)
    assert f"{problem.field}: {problem.message}\n  fix: {problem.fix}" in TEXT
