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
    from arcana.testing.answers import GrpcReply, JobOutcome, Response
    from arcana.testing.build import plugin_file
    from arcana.testing.harness import HarnessFactory, NoHandler, PluginHarness, harness_factory
    from arcana.testing.recording import EmittedEvent, EnqueuedJob, LogRecord
    from arcana.testing.store import KvView, StoreView

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

# Each name's module, as imported above for the type checker.
_HOMES = {
    **dict.fromkeys(("GrpcReply", "JobOutcome", "Response"), "arcana.testing.answers"),
    "plugin_file": "arcana.testing.build",
    **dict.fromkeys(("HarnessFactory", "NoHandler", "PluginHarness", "harness_factory"), "arcana.testing.harness"),
    **dict.fromkeys(("EmittedEvent", "EnqueuedJob", "LogRecord"), "arcana.testing.recording"),
    **dict.fromkeys(("KvView", "StoreView"), "arcana.testing.store"),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'arcana.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
