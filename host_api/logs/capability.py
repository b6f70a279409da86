"""`log(level, message, fields)`: a plugin's log line, tagged with who wrote it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from arcana.errors import Problem, ValidationFailed
from arcana.manifest import Manifest
from arcana_host.capability import CallContext, HostFunction

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


class LogCapability:
    name = "log"

    def host_functions(self) -> Sequence[HostFunction]:
        return [HostFunction("log", self.name, self.log)]

    def configure(self, manifest: Manifest) -> list[Problem]:
        return []

    def close(self) -> None:
        pass

    def log(self, ctx: CallContext, request: dict[str, Any]) -> dict[str, Any]:
        level = LEVELS.get(str(request.get("level", "info")).lower())
        if level is None:
            raise ValidationFailed(f"unknown log level {request.get('level')!r}; use debug|info|warn|error")
        message = str(request.get("message", ""))[:MAX_MESSAGE_CHARS]
        fields = request.get("fields") or {}
        if not isinstance(fields, dict):
            raise ValidationFailed("log fields must be a JSON object")
        logger.log(
            level,
            message,
            extra={"plugin": ctx.plugin, "plugin_version": ctx.version, "request_id": ctx.request_id, "fields": fields},
        )
        return {}
