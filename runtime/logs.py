"""Process logging: one JSON object per line, with the structured extras and the request's own fields.

A line written while a request or job is being served carries ``request_id``,
``trace_id`` (from the W3C traceparent the call continues: the incoming one, or
its own span's with tracing on), ``plugin``, ``plugin_version`` and
``principal`` (the caller's ``sub``; never a token). They come from the call's
``LogScope``, set in a context variable by the request core and the job
dispatcher, and, on a plugin's own thread (which a context variable does not
reach by itself), by each host call from its ``CallContext``. A field passed
with ``extra=`` wins over the scope's.

Values under keys that name a credential (token, password, secret,
authorization, cookie, api key) are written as ``[redacted]``, at any depth:
a plugin's log ``fields`` are as untrusted as anything else it sends.

Third-party start-up chatter (alembic's migration INFO lines, uvicorn's, the
watcher's) is kept at WARNING unless ``logging.level`` is debug.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from arcana.config import LoggingConfig

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# Loggers of libraries that are chatty at INFO (start-up banners, migration steps, file events, HTTP/2 frames).
QUIET_LOGGERS = (
    "alembic",
    "uvicorn",
    "quart",
    "hypercorn",
    "watchfiles",
    "hpack",
    "h2",
    "httpx",
    "httpcore",
    "grpc",
    "asyncio",
    "opentelemetry",
)
# Keys whose values are never written: credentials, whatever part of a log line they travel in.
SECRET_KEY = re.compile(r"token|passw|secret|authori[sz]ation|cookie|api[-_]?key|credential", re.IGNORECASE)
REDACTED = "[redacted]"
# Nesting followed when redacting; deeper values are cut (a plugin's fields are already depth-bounded).
MAX_REDACT_DEPTH = 16
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


class LogScope(Protocol):
    """What a call's log lines are tagged with: ``CallContext`` is one, ``RequestScope`` another."""

    request_id: str
    traceparent: str
    plugin: str
    version: str
    principal: dict[str, Any] | None


@dataclass(slots=True)
class RequestScope:
    """A request before (or without) its plugin call: an edge knows the request id and traceparent."""

    request_id: str
    traceparent: str = ""
    plugin: str = ""
    version: str = ""
    principal: dict[str, Any] | None = None


# The scope of the request or job this task (or plugin thread, during a host call) is serving.
SCOPE: ContextVar[LogScope | None] = ContextVar("arcana_log_scope", default=None)


def enter(scope: LogScope) -> Token[LogScope | None]:
    """Tag this task's (or thread's) log lines with ``scope`` until ``leave``."""
    return SCOPE.set(scope)


def leave(token: Token[LogScope | None]) -> None:
    SCOPE.reset(token)


def trace_id(traceparent: str) -> str:
    """The trace id of a valid W3C traceparent, else ""."""
    found = _TRACEPARENT.match(traceparent)
    if found is None or found.group(1) == "0" * 32:
        return ""
    return found.group(1)


class ScopeFilter(logging.Filter):
    """Adds the current call's fields to each record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = SCOPE.get()
        if scope is None:
            return True
        fields = record.__dict__
        for key, value in (
            ("request_id", scope.request_id),
            ("plugin", scope.plugin),
            ("plugin_version", scope.version),
            ("trace_id", trace_id(scope.traceparent)),
            ("principal", (scope.principal or {}).get("sub")),
        ):
            if value and fields.get(key) is None:
                fields[key] = value
        return True


def redact(value: Any, depth: int = 0) -> Any:
    """``value`` with every credential-named key's value replaced, at any depth."""
    if depth > MAX_REDACT_DEPTH:
        return "[too deep]"
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) else redact(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, depth + 1) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD and v is not None}
        entry.update(redact(extras))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(config: LoggingConfig, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScopeFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    quiet = logging.NOTSET if config.level == "debug" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
