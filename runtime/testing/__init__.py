"""Test a plugin as the server runs it, from plain synchronous test code: see docs/testing.md.

``PluginHarness`` serves one plugin in a real in-process kernel; the pytest
fixture ``arcana_plugin`` (``arcana.testing.pytest_plugin``, registered as a
pytest plugin when arcana is installed) makes one per call and closes it
after the test. pytest itself is imported by that module only.

The names below are imported on first use: pytest loads the plugin module
(and so this package) at the start of every session, which must not cost a
kernel import when no test asks for the fixture.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arcana.testing.harness import (
        GrpcReply,
        HarnessFactory,
        JobOutcome,
        KvView,
        NoHandler,
        PluginHarness,
        Response,
        StoreView,
        harness_factory,
        plugin_file,
    )
    from arcana.testing.recording import EmittedEvent, EnqueuedJob, LogRecord

__all__ = [
    "EmittedEvent",
    "EnqueuedJob",
    "GrpcReply",
    "HarnessFactory",
    "JobOutcome",
    "KvView",
    "LogRecord",
    "NoHandler",
    "PluginHarness",
    "Response",
    "StoreView",
    "harness_factory",
    "plugin_file",
]

_RECORDS = {"EmittedEvent", "EnqueuedJob", "LogRecord"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'arcana.testing' has no attribute {name!r}")
    home = "arcana.testing.recording" if name in _RECORDS else "arcana.testing.harness"
    return getattr(importlib.import_module(home), name)
