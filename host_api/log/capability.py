"""`log(level, message, fields)`: a plugin's log line, tagged with who wrote it."""

from __future__ import annotations

import logging
from typing import Any

from arcana.errors import ValidationFailed
from arcana.types import CallContext, HostFunction, JsonObject
from arcana_host.call_scoped import CallScoped

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
# A plugin must not be able to flood the log with one call.
MAX_MESSAGE_CHARS = 4096

logger = logging.getLogger("arcana.plugin")


class LogCapability(CallScoped):
    """Granted to every plugin by the default config (``grants: {"*": [log]}``)."""

    name = "log"

    def log(self, call: CallContext, request: JsonObject) -> JsonObject:
        level = LEVELS.get(str(request.get("level", "info")).lower())
        if level is None:
            raise ValidationFailed(f"unknown log level {request.get('level')!r}; use debug|info|warn|error")
        message = str(request.get("message", ""))[:MAX_MESSAGE_CHARS]
        fields: Any = request.get("fields") or {}
        if not isinstance(fields, dict):
            raise ValidationFailed("log fields must be a JSON object")
        extra = {"plugin": call.plugin, "plugin_version": call.version, "request_id": call.request_id}
        logger.log(level, message, extra={**extra, "fields": fields})
        return {}

    # quick: a log line is formatted and handed to the log handler, nothing waits.
    functions = (HostFunction("log", "log", log, quick=True),)
