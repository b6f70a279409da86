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

Nesting. The parser's own guard is the interpreter's recursion limit, about
a thousand levels *less the stack in use*: a body nested 981 deep passed on
the plugin edge's short stack, and the plugin's answer wrapping it did not.
So client documents have a fixed bound of their own, ``MAX_DEPTH``, far
below that limit: whatever a client sends can be decoded, re-encoded and
wrapped by a plugin on any stack. Plugin output keeps only the parser's
guard (it may wrap a client document that was at the bound).
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import msgspec

from arcana.errors import ValidationFailed

_COMPACT = (",", ":")
# Client JSON nested deeper than this is refused. A fixed property of the
# kernel's JSON contract rather than a config key: it only has to stay well
# under the recursion limit, and the request core builds plugin envelopes
# without the config (making it one means passing it through arcana.core and
# the plugin edge). Common choices: .NET 64, serde_json 128.
MAX_DEPTH = 256
# A JSON string (the input is known to be valid JSON when this is used).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
# Openers -> +1, closers -> -1 (0xff as a signed byte).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


class JsonRejected(ValueError):
    """A JSON document refused; ``str()`` is a client-safe reason."""


def decode(data: bytes, max_depth: int | None = None) -> Any:
    """Parse one JSON document strictly, or raise JsonRejected saying why.

    With ``max_depth``, a document nested deeper is refused too (arrays and
    objects count one level each; a scalar at the top is depth 0).
    """
    try:
        value = msgspec.json.decode(data)
    except msgspec.ValidationError as exc:  # numbers: integers over 4,300 digits, floats beyond double range
        raise JsonRejected(f"a number is out of range ({exc})") from None
    except msgspec.DecodeError as exc:  # malformed, truncated, trailing data, invalid UTF-8, lone surrogates
        raise JsonRejected(str(exc)) from None
    except RecursionError:
        raise JsonRejected("it is nested too deeply") from None
    if max_depth is not None and _too_deep(data, max_depth):
        raise JsonRejected(f"it is nested more than {max_depth} levels deep")
    return value


def _too_deep(data: bytes, max_depth: int) -> bool:
    # Depth cannot exceed the number of openers (those in strings included): a
    # count settles nearly every document without looking closer.
    return data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data) > max_depth


def nesting_depth(data: bytes) -> int:
    """How deep a valid JSON document nests (a scalar is 0).

    Brackets outside strings, summed: each pass runs in C (regex, translate,
    accumulate), with no Python loop over the bytes and no recursion.
    """
    steps = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS).translate(_STEPS)
    return max(itertools.accumulate(memoryview(steps).cast("b")), default=0)


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
        # the standard library writes it as a \\ud800-style escape instead of refusing.
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
        return decode(data, MAX_DEPTH)
    except JsonRejected as exc:
        raise ValidationFailed(f"request body is not valid JSON: {exc}") from None
