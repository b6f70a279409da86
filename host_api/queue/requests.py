"""``queue_enqueue`` and ``queue_status`` requests, checked field by field before the queue sees them.

Types come first (a clear VALIDATION_FAILED naming the field); ranges and
sizes are ``JobQueue.spec``'s, so a plugin meets exactly the bounds every
other way into the queue meets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arcana.errors import ValidationFailed
from arcana.types import JsonObject

ENQUEUE_FIELDS = frozenset({"type", "payload", "priority", "delay_ms", "max_retries", "dedupe_key"})
MAX_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class EnqueueRequest:
    type: str
    payload: Any
    priority: str
    delay_ms: int
    max_retries: int | None
    dedupe_key: str | None


def _typed(req: JsonObject, name: str, kind: type, default: Any, what: str) -> Any:
    value = req.get(name)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValidationFailed(f"'{name}' must be {what}")
    return value


def refuse_unknown(function: str, req: JsonObject, fields: frozenset[str]) -> None:
    """A typo ("delay" for "delay_ms") would otherwise be ignored silently: the job would run at once."""
    unknown = sorted(set(req) - fields)
    if unknown:
        # Names as the plugin sent them, bounded: the message must not grow with the request.
        shown = [name[:40] for name in unknown[:5]]
        raise ValidationFailed(f"{function} does not take {shown}; fields: {', '.join(sorted(fields))}")


def enqueue(req: JsonObject) -> EnqueueRequest:
    refuse_unknown("queue_enqueue", req, ENQUEUE_FIELDS)
    job_type = _typed(req, "type", str, "", "a string")
    if not job_type:
        raise ValidationFailed("'type' is required: one of the job types this plugin may enqueue")
    return EnqueueRequest(
        type=job_type,
        payload=req.get("payload"),
        priority=_typed(req, "priority", str, "normal", "one of critical, high, normal, low"),
        delay_ms=_typed(req, "delay_ms", int, 0, "a non-negative integer"),
        max_retries=_typed(req, "max_retries", int, None, "an integer"),
        dedupe_key=_typed(req, "dedupe_key", str, None, "a string"),
    )


def job_id(req: JsonObject) -> str:
    value = req.get("id")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise ValidationFailed(f"'id' must be a job id (a string of 1-{MAX_ID_CHARS} characters)")
    return value
