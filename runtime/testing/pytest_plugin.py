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

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from arcana.testing.harness import HarnessFactory


@pytest.fixture
def arcana_plugin() -> Iterator[HarnessFactory]:
    """``arcana_plugin(path, grants=None, *, config=None, db=None)`` -> a ``PluginHarness``, closed after the test."""
    from arcana.testing.harness import harness_factory

    with harness_factory() as make:
        yield make
