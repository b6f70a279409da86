"""Strict JSON: the one parser for every JSON document the kernel reads from a client or a plugin.

``json.loads`` let bad input escape as foreign exceptions (a ``RecursionError``
for deep nesting, a ``ValueError`` for integers over Python's 4,300-digit
limit) that reached the catch-all as INTERNAL with a traceback, and accepted
``NaN`` and ``1e999`` (infinity), which it then wrote back out as invalid
JSON. msgspec's decoder (already a dependency, and about ten times faster) is
strict: it refuses trailing data, invalid UTF-8, lone surrogates, ``NaN``,
numbers out of range and over-long integers with one exception type, and
guards its recursion. Every way a document can be refused becomes
``JsonRejected`` here, with a reason safe to show to whoever sent it; each
caller maps that to its own error (VALIDATION_FAILED for a client,
PLUGIN_FAILED for a plugin).

Nesting is bounded by the interpreter's recursion limit (about a thousand
levels less the stack in use), the same bound for decoding and encoding:
a document too deep to handle is refused as "nested too deeply", never
raised as a crash. No depth bound of our own is added on top.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from arcana.errors import ValidationFailed

_COMPACT = (",", ":")


class JsonRejected(ValueError):
    """A JSON document refused; ``str()`` is a client-safe reason."""


def decode(data: bytes) -> Any:
    """Parse one JSON document strictly, or raise JsonRejected saying why."""
    try:
        return msgspec.json.decode(data)
    except msgspec.ValidationError as exc:  # numbers: integers over 4,300 digits, floats beyond double range
        raise JsonRejected(f"a number is out of range ({exc})") from None
    except msgspec.DecodeError as exc:  # malformed, truncated, trailing data, invalid UTF-8, lone surrogates
        raise JsonRejected(str(exc)) from None
    except RecursionError:
        raise JsonRejected("it is nested too deeply") from None


def decode_object(data: bytes) -> dict[str, Any]:
    """Like ``decode``, for documents whose top level must be an object."""
    value = decode(data)
    if not isinstance(value, dict):
        raise JsonRejected("the top level must be a JSON object")
    return value


def encode(value: Any) -> bytes:
    """Compact JSON bytes of a decoded value; JsonRejected when it is nested too deeply to write."""
    try:
        return msgspec.json.encode(value)
    except RecursionError:
        raise JsonRejected("it is nested too deeply") from None
    except UnicodeEncodeError:
        # A lone surrogate in a string the kernel did not parse itself (a token claim):
        # the standard library escapes it as \\udXXX instead of refusing.
        try:
            return json.dumps(value, separators=_COMPACT).encode()
        except RecursionError:
            raise JsonRejected("it is nested too deeply") from None


def client_json(data: bytes, content_encoding: str = "") -> Any:
    """A client's JSON request body, or VALIDATION_FAILED saying why: the one parser for client JSON.

    Compressed bodies are refused rather than guessed at: nothing in the
    kernel inflates them, and inflating would need a bound of its own.
    """
    encoding = content_encoding.strip().lower()
    if encoding not in ("", "identity"):
        raise ValidationFailed(
            f"content-encoding {content_encoding.strip()!r} is not supported for a JSON body; send it uncompressed"
        )
    try:
        return decode(data)
    except JsonRejected as exc:
        raise ValidationFailed(f"request body is not valid JSON: {exc}") from None
