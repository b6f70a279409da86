"""What a harness call gives back: an HTTP response, a gRPC reply, a job or event handler's outcome."""

from __future__ import annotations

import json as jsonlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Response:
    """An HTTP answer as a client sees it."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def error_code(self) -> str | None:
        """The error model's ``code`` (e.g. "NOT_FOUND") of a 4xx/5xx answer; None otherwise."""
        if self.status < 400:
            return None
        try:
            data = jsonlib.loads(self.body)
        except ValueError:
            return None
        code = data.get("code") if isinstance(data, dict) else None
        return code if isinstance(code, str) else None

    @property
    def request_id(self) -> str:
        return self.headers.get("x-request-id", "")


@dataclass(frozen=True)
class GrpcReply:
    """A gRPC answer: the status name, the reply message (proto3 JSON), or the error model's body."""

    code: str  # "OK", "NOT_FOUND", "UNAUTHENTICATED", ...
    message: dict[str, Any]  # {} unless OK
    error: dict[str, Any] | None  # {"code", "message", "request_id"} unless OK

    @property
    def ok(self) -> bool:
        return self.code == "OK"


@dataclass(frozen=True)
class JobOutcome:
    """What a job or event handler did: ``ok`` with the job's ``result`` (None for an event), or its ``error``."""

    ok: bool
    result: Any = None
    error: dict[str, Any] | None = None  # {"code", "message"} in the public error model
    type: str = ""  # the job type, or the event topic
    handler: str = ""  # the plugin's handler that ran it ("" when none did)

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else str(self.error.get("code"))
