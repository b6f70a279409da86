"""Filters and sort fields from a plugin, validated into ``Condition`` records.

A filter is a JSON object; every entry must hold (AND)::

    {"status": "open",                         equality (string, number, boolean, null)
     "meta.priority": {"$gte": 2, "$lt": 5},   ranges on numbers or strings, nested paths
     "owner": {"$in": ["ann", "bob"]},         one of up to 100 values
     "title": {"$prefix": "Re: "},             case-sensitive string prefix
     "tags": {"$contains": "work"},            an array holding the value
     "created_at": {"$gte": "2025-01-01"}}     metadata fields: id, version, created_at, updated_at

A field path is up to 8 dot-separated segments of letters, digits, '_' and
'-'. Values are typed: the string "1" never equals the number 1. A condition
on a field a document does not have is false, except equality with null.
"""

from __future__ import annotations

import math
import re
from typing import Any

from arcana.errors import ValidationFailed
from arcana_host.store.types import Condition

SEGMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
MAX_DEPTH = 8
MAX_CONDITIONS = 32
MAX_IN_VALUES = 100
MAX_VALUE_CHARS = 1024
OPERATORS = {
    "$eq": "eq",
    "$gt": "gt",
    "$gte": "gte",
    "$lt": "lt",
    "$lte": "lte",
    "$in": "in",
    "$prefix": "prefix",
    "$contains": "contains",
}
# What each metadata field holds, hence which operators apply to it.
META_TYPES: dict[str, type] = {"id": str, "version": int, "created_at": str, "updated_at": str}


def field_path(name: str, what: str = "field") -> tuple[str, ...]:
    segments = tuple(name.split("."))
    if len(segments) > MAX_DEPTH or not all(SEGMENT_RE.match(s) for s in segments):
        raise ValidationFailed(
            f"{what} {name[:80]!r} is not a valid field path: use up to {MAX_DEPTH} "
            "dot-separated names of letters, digits, '_' and '-'"
        )
    return segments


def parse_conditions(raw: Any) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ValidationFailed('filter must be a JSON object such as {"field": value} or {"field": {"$gt": 1}}')
    out: list[Condition] = []
    for name, spec in raw.items():
        path = field_path(name)
        if isinstance(spec, dict):
            if not spec:
                raise ValidationFailed(f"filter on '{name}' has no operator")
            for op_name, value in spec.items():
                op = OPERATORS.get(op_name)
                if op is None:
                    raise ValidationFailed(
                        f"unknown filter operator {op_name[:40]!r} on '{name}'; use one of {', '.join(OPERATORS)}"
                    )
                out.append(_condition(path, op, value, name))
        else:
            out.append(_condition(path, "eq", spec, name))
    if len(out) > MAX_CONDITIONS:
        raise ValidationFailed(f"a filter may hold at most {MAX_CONDITIONS} conditions, got {len(out)}")
    return tuple(out)


def _condition(path: tuple[str, ...], op: str, value: Any, name: str) -> Condition:
    cond = Condition(path, op, tuple(value) if isinstance(value, list) else value)
    if op == "in":
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
            raise ValidationFailed(f"$in on '{name}' needs a list of 1 to {MAX_IN_VALUES} values")
        for item in value:
            _check_value(cond, "eq", item, name)
    else:
        _check_value(cond, op, value, name)
    return cond


def _check_value(cond: Condition, op: str, value: Any, name: str) -> None:
    scalar = value is None or isinstance(value, (str, int, float))
    if not scalar:
        raise ValidationFailed(
            f"filter on '{name}' compares with a string, number, boolean or null, not {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationFailed(f"filter on '{name}' has a non-finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ValidationFailed(f"filter on '{name}' has an integer beyond 64 bits")
    if isinstance(value, str) and (len(value) > MAX_VALUE_CHARS or "\x00" in value):
        raise ValidationFailed(
            f"filter on '{name}' has a string longer than {MAX_VALUE_CHARS} characters or holding NUL"
        )
    allowed: tuple[type, ...] = {
        "eq": (str, int, float, bool, type(None)),
        "gt": (str, int, float),
        "gte": (str, int, float),
        "lt": (str, int, float),
        "lte": (str, int, float),
        "prefix": (str,),
        "contains": (str, int, float, bool),
    }[op]
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise ValidationFailed(f"${op} on '{name}' cannot compare with {_json_type(value)}")
    if cond.is_meta:
        _check_meta(cond.path[0], op, value)


def _check_meta(field: str, op: str, value: Any) -> None:
    kind = META_TYPES[field]
    if op == "contains" or (op == "prefix" and kind is int):
        raise ValidationFailed(f"${op} does not apply to '{field}'")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValidationFailed(
            f"'{field}' is a {'string' if kind is str else 'integer'}; it cannot be compared with {_json_type(value)}"
        )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number"}.get(type(value), "an array or object")
