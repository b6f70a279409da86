"""Host-function requests (JSON objects from a plugin) parsed into store records.

Everything a plugin passes is checked here, before a backend sees it: names
against a strict alphabet, field paths segment by segment, filter operators
against a fixed list, sizes against the operator's bounds. A failure is
``ValidationFailed`` (or ``PayloadTooLarge`` for an oversized body) with a
message that says what is allowed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from arcana.errors import PayloadTooLarge, ValidationFailed
from arcana_host.store.config import StoreConfig
from arcana_host.store.filter_parse import field_path, parse_conditions
from arcana_host.store.types import META_FIELDS, DeleteOp, PutOp, Query

COLLECTION_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:~-]{0,127}$")
MAX_KEY_CHARS = 256
MAX_PAGE = 1_000_000
# Integers the databases can hold (SQLite and PostgreSQL BIGINT).
INT64 = range(-(2**63), 2**63)


def _get(req: dict[str, Any], name: str, kind: type | tuple[type, ...], required: bool = True) -> Any:
    value = req.get(name)
    if value is None:
        if required:
            raise ValidationFailed(f"'{name}' is required")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValidationFailed(f"'{name}' must be a {names.replace('dict', 'JSON object').replace('str', 'string')}")
    return value


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def collection(req: dict[str, Any]) -> str:
    name = _get(req, "collection", str)
    if not COLLECTION_RE.match(name):
        raise ValidationFailed(
            f"collection {name[:80]!r} is not a valid name: use up to 64 letters, digits, "
            "'_', '-' or '.', starting with a letter"
        )
    return str(name)


def doc_id(req: dict[str, Any], required: bool = True) -> str | None:
    value = _get(req, "id", str, required)
    if value is not None and not ID_RE.match(value):
        raise ValidationFailed(
            f"id {value[:80]!r} is not a valid document id: use up to 128 letters, digits "
            "or '_', '-', '.', ':', '~', not starting with a punctuation mark"
        )
    return value  # type: ignore[no-any-return]


def expected_version(req: dict[str, Any]) -> int | None:
    value = _get(req, "expected_version", int, required=False)
    if value is not None and not 0 <= value < 2**63:
        raise ValidationFailed("'expected_version' must be 0 (create only) or a version number")
    return value  # type: ignore[no-any-return]


def encoded_size(value: Any, what: str) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON; refuses NaN, infinities and NUL characters."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        raise ValidationFailed(f"{what} must be plain JSON (no NaN or Infinity)") from exc
    if "\\u0000" in text and _has_nul(value):
        raise ValidationFailed(f"{what} must not contain NUL characters")
    return len(text.encode())


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def put_op(req: dict[str, Any], limits: StoreConfig) -> PutOp:
    body = _get(req, "doc", dict)
    reserved = sorted(set(body) & set(META_FIELDS))
    if reserved:
        raise ValidationFailed(
            f"doc must not set {', '.join(reserved)}: the store keeps "
            f"{', '.join(META_FIELDS)} itself (pass id and expected_version beside doc)"
        )
    size = encoded_size(body, "doc")
    if size > limits.max_doc_bytes:
        raise PayloadTooLarge(f"doc is {size} bytes; the most a document may hold is {limits.max_doc_bytes} bytes")
    return PutOp(collection(req), body, doc_id(req, required=False), expected_version(req))


def delete_op(req: dict[str, Any]) -> DeleteOp:
    return DeleteOp(collection(req), str(doc_id(req)), expected_version(req))


def query(req: dict[str, Any], limits: StoreConfig) -> Query:
    sort = _default(_get(req, "sort", str, required=False), "created_at")
    order = _default(_get(req, "order", str, required=False), "asc")
    if order not in ("asc", "desc"):
        raise ValidationFailed(f"order must be 'asc' or 'desc', got {order[:20]!r}")
    page = _default(_get(req, "page", int, required=False), 1)
    size = _default(_get(req, "size", int, required=False), limits.default_page_size)
    if not 1 <= page <= MAX_PAGE:
        raise ValidationFailed(f"page must be between 1 and {MAX_PAGE}, got {page}")
    if not 1 <= size <= limits.max_page_size:
        raise ValidationFailed(f"size must be between 1 and {limits.max_page_size}, got {size}")
    return Query(
        collection(req), parse_conditions(req.get("filter")), field_path(sort, "sort"), order == "desc", page, size
    )


def batch(req: dict[str, Any], limits: StoreConfig) -> list[PutOp | DeleteOp]:
    ops = _get(req, "ops", list)
    if not 1 <= len(ops) <= limits.max_batch_ops:
        raise ValidationFailed(f"ops must hold 1 to {limits.max_batch_ops} operations, got {len(ops)}")
    parsed: list[PutOp | DeleteOp] = []
    for i, op in enumerate(ops):
        try:
            if not isinstance(op, dict) or op.get("op") not in ("put", "delete"):
                raise ValidationFailed('each operation must be an object with "op": "put" or "delete"')
            parsed.append(put_op(op, limits) if op["op"] == "put" else delete_op(op))
        except (ValidationFailed, PayloadTooLarge) as exc:
            raise type(exc)(f"ops[{i}]: {exc.message}") from exc
    return parsed


def kv_key(req: dict[str, Any]) -> str:
    key = _get(req, "key", str)
    if not 1 <= len(key) <= MAX_KEY_CHARS or any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise ValidationFailed(f"key must be 1 to {MAX_KEY_CHARS} characters without control characters")
    return str(key)


def kv_value(req: dict[str, Any], limits: StoreConfig) -> Any:
    if "value" not in req:
        raise ValidationFailed("'value' is required (any JSON value)")
    size = encoded_size(req["value"], "value")
    if size > limits.max_value_bytes:
        raise PayloadTooLarge(f"value is {size} bytes; the most a key may hold is {limits.max_value_bytes} bytes")
    return req["value"]


def ttl(req: dict[str, Any]) -> float | None:
    value = _get(req, "ttl", (int, float), required=False)
    if value is None:
        return None
    if isinstance(value, bool) or not math.isfinite(value) or not 0 < value <= 10 * 365 * 86400:
        raise ValidationFailed("ttl must be a number of seconds, more than 0 and at most 10 years")
    return float(value)


def incr_by(req: dict[str, Any]) -> int:
    by = _get(req, "by", int, required=False)
    if by is None:
        return 1
    if by not in INT64:
        raise ValidationFailed("by must be a 64-bit integer")
    return int(by)
