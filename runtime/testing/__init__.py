"""Test a plugin as the server runs it, from plain synchronous test code: see docs/testing.md.

``PluginHarness`` serves one plugin in a real in-process kernel; the pytest
fixture ``arcana_plugin`` (``arcana.testing.pytest_plugin``, registered as a
pytest plugin when arcana is installed) makes one per call and closes it
after the test. pytest itself is imported by that module only.
"""

from arcana.testing.harness import (
    GrpcReply,
    HarnessFactory,
    JobOutcome,
    KvView,
    NoHandler,
    PluginHarness,
    Response,
    StoreView,
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
    "plugin_file",
]
