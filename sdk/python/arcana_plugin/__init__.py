"""The Arcana guest SDK for Python plugins (built into WebAssembly components by ``arcana plugin build``).

An ``app.py``::

    from arcana_plugin import Code, Fail, Plugin, created, store

    app = Plugin()

    @app.route("GET", "/api/v1/bookmarks/{id}")
    def get_bookmark(req):
        return store.get("bookmarks", req.param("id")).unwrap()

Reference: docs/python.md.
"""

from __future__ import annotations

import sys

from . import host
from .contract import HOST_FUNCTIONS, Code
from .envelopes import (
    Envelope,
    EnvelopeError,
    Event,
    EventRequest,
    GrpcRequest,
    HttpRequest,
    Job,
    JobRequest,
    Principal,
    parse,
)
from .host import HostError, Result, auth, clock, config, events, http, kv, log, queue, random, store
from .plugin import Plugin
from .responses import (
    Fail,
    Response,
    bytes_response,
    created,
    json_response,
    no_content,
    not_modified,
    text,
)

__all__ = [
    "HOST_FUNCTIONS",
    "Code",
    "Envelope",
    "EnvelopeError",
    "Event",
    "EventRequest",
    "Fail",
    "GrpcRequest",
    "HostError",
    "HttpRequest",
    "Job",
    "JobRequest",
    "Plugin",
    "Principal",
    "Response",
    "Result",
    "auth",
    "bytes_response",
    "clock",
    "config",
    "created",
    "events",
    "http",
    "json_response",
    "kv",
    "log",
    "no_content",
    "not_modified",
    "parse",
    "queue",
    "random",
    "store",
    "text",
]

# In a build, the world's bindings exist now: import them into the snapshot componentize-py takes.
host.preload()
if sys.platform == "wasi":  # inside the component only: a test in CPython keeps its own stdout
    host.redirect_stdio()
