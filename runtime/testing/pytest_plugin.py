"""The ``arcana_plugin`` fixture: registered through the ``pytest11`` entry point when arcana is installed.

    def test_hello(arcana_plugin):
        h = arcana_plugin(Path(__file__).parent.parent / "hello.wasm")
        assert h.get("/api/v1/hello/Ada").json() == {"message": "Hello, Ada!"}

The fixture is a factory: each call is a fresh kernel with a fresh store
(a source folder is built once per test session), and every harness it made
is closed when the test ends, passed or failed. The harness is imported on
first use, so a pytest session that never asks for the fixture loads no kernel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from arcana.testing.harness import HarnessFactory, PluginHarness


@pytest.fixture
def arcana_plugin() -> Iterator[HarnessFactory]:
    """``arcana_plugin(path, grants=None, **options)`` -> a ``PluginHarness``, closed after the test."""
    from arcana.testing.harness import PluginHarness

    made: list[PluginHarness] = []

    def make(path: str | Path, grants: Sequence[str] | None = None, **options: Any) -> PluginHarness:
        harness = PluginHarness(path, grants, **options)
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in reversed(made):
            harness.close()
