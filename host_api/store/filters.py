"""Validated conditions and sort fields compiled into SQLAlchemy expressions.

Paths and values always travel as bound parameters, never as SQL text. Both
dialects expose a path of the document through the same typed views, so a
filter or a sort means the same on SQLite and PostgreSQL:

- ``text(path)``: the string at the path, compared byte-wise; NULL if not a string;
- ``number(path)``: the number at the path; NULL if not a number;
- ``truth(path)``: 1/0 for true/false; NULL if not a boolean;
- ``sort_keys(path)``: JSON types in the order missing/null, booleans
  (false < true), numbers, strings (byte-wise), arrays and objects (unordered
  among themselves), then by id; descending reverses all.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from arcana_host.store.schema import documents
from arcana_host.store.types import Condition

Expr = ColumnElement[Any]
DOC = documents.c.doc


class JsonView(Protocol):
    """How one SQL dialect reads typed values at a path of the document column."""

    def text(self, path: tuple[str, ...]) -> Expr: ...
    def number(self, path: tuple[str, ...]) -> Expr: ...
    def truth(self, path: tuple[str, ...]) -> Expr: ...
    def is_null(self, path: tuple[str, ...]) -> Expr: ...
    def contains(self, path: tuple[str, ...], value: Any) -> Expr: ...
    def sort_keys(self, path: tuple[str, ...]) -> list[Expr]: ...


# Simple CASE forms (``CASE x WHEN ...``) read the JSON type once per row, not once per branch.
class SqliteJson:
    """SQLite's JSON1 functions: ``json_type`` names the type, ``json_extract`` reads the value."""

    @staticmethod
    def _path(path: tuple[str, ...]) -> Expr:
        return sa.literal("$" + "".join(f'."{s}"' for s in path))  # segments never hold '"'

    def _type(self, path: tuple[str, ...]) -> Expr:
        return sa.func.json_type(DOC, self._path(path))

    def _value(self, path: tuple[str, ...]) -> Expr:
        return sa.func.json_extract(DOC, self._path(path))

    def text(self, path: tuple[str, ...]) -> Expr:
        return sa.case({"text": self._value(path)}, value=self._type(path))

    def number(self, path: tuple[str, ...]) -> Expr:
        value = self._value(path)
        return sa.case({"integer": value, "real": value}, value=self._type(path))

    def truth(self, path: tuple[str, ...]) -> Expr:
        return sa.case({"true": 1, "false": 0}, value=self._type(path))

    def is_null(self, path: tuple[str, ...]) -> Expr:
        return sa.func.coalesce(self._type(path), "null") == "null"

    def contains(self, path: tuple[str, ...], value: Any) -> Expr:
        each = sa.func.json_each(DOC, self._path(path)).table_valued("type", "value")
        if isinstance(value, bool):
            match = each.c.type == ("true" if value else "false")
        elif isinstance(value, str):
            match = sa.and_(each.c.type == "text", each.c.value == value)
        else:
            match = sa.and_(each.c.type.in_(("integer", "real")), each.c.value == value)
        return sa.exists(sa.select(sa.literal(1)).select_from(each).where(match))

    def sort_keys(self, path: tuple[str, ...]) -> list[Expr]:
        # json_extract already yields 0/1 for booleans, numbers, and strings that sort byte-wise.
        kind = self._type(path)
        rank = sa.case(
            {"true": 1, "false": 1, "integer": 2, "real": 2, "text": 3, "array": 4, "object": 4}, value=kind, else_=0
        )
        return [rank, sa.case({"array": None, "object": None}, value=self._type(path), else_=self._value(path))]


class PostgresJson:
    """PostgreSQL's jsonb: ``#>`` reads a path (a text[] parameter), ``jsonb_typeof`` names the type."""

    @staticmethod
    def _path(path: tuple[str, ...]) -> Expr:
        return sa.literal(list(path), postgresql.ARRAY(sa.Text))

    def _json(self, path: tuple[str, ...]) -> Expr:
        return DOC.op("#>", return_type=postgresql.JSONB)(self._path(path))

    def _raw_text(self, path: tuple[str, ...]) -> Expr:
        return DOC.op("#>>", return_type=sa.Text)(self._path(path))

    def _type(self, path: tuple[str, ...]) -> Expr:
        return sa.func.jsonb_typeof(self._json(path), type_=sa.Text)

    def text(self, path: tuple[str, ...]) -> Expr:
        return sa.collate(sa.case({"string": self._raw_text(path)}, value=self._type(path)), "C")

    def number(self, path: tuple[str, ...]) -> Expr:
        return sa.case({"number": sa.cast(self._raw_text(path), sa.Numeric)}, value=self._type(path))

    def truth(self, path: tuple[str, ...]) -> Expr:
        return sa.case({"boolean": sa.case({"true": 1}, value=self._raw_text(path), else_=0)}, value=self._type(path))

    def is_null(self, path: tuple[str, ...]) -> Expr:
        return sa.func.coalesce(self._type(path), "null") == "null"

    def contains(self, path: tuple[str, ...], value: Any) -> Expr:
        needle = sa.cast(sa.literal(json.dumps(value)), postgresql.JSONB)
        return sa.func.coalesce(self._json(path).op("@>", return_type=sa.Boolean)(needle), sa.false())

    def sort_keys(self, path: tuple[str, ...]) -> list[Expr]:
        rank = sa.case(
            {"boolean": 1, "number": 2, "string": 3, "array": 4, "object": 4}, value=self._type(path), else_=0
        )
        scalar = sa.case(
            {
                "number": sa.cast(self._raw_text(path), sa.Numeric),
                "boolean": sa.case({"true": 1}, value=self._raw_text(path), else_=0),
            },
            value=self._type(path),
        )
        return [rank, scalar, self.text(path)]


def json_view(dialect: str) -> JsonView:
    return PostgresJson() if dialect == "postgresql" else SqliteJson()


def where(view: JsonView, conditions: tuple[Condition, ...]) -> Expr:
    return sa.and_(sa.true(), *(_condition(view, c) for c in conditions))


def _condition(view: JsonView, cond: Condition) -> Expr:
    if cond.op == "in":
        return sa.or_(*(_compare(view, cond.path, "eq", v, cond.is_meta) for v in cond.value))
    if cond.op == "contains":
        return view.contains(cond.path, cond.value)
    return _compare(view, cond.path, cond.op, cond.value, cond.is_meta)


def _compare(view: JsonView, path: tuple[str, ...], op: str, value: Any, meta: bool) -> Expr:
    if value is None:
        return view.is_null(path)
    if meta:
        target: Expr = documents.c[path[0]]
    elif isinstance(value, bool):
        target, value = view.truth(path), int(value)
    elif isinstance(value, str):
        target = view.text(path)
    else:
        target = view.number(path)
    if op == "prefix":
        return sa.func.substr(target, 1, sa.literal(len(value))) == sa.literal(value)
    operator = {"eq": "__eq__", "gt": "__gt__", "gte": "__ge__", "lt": "__lt__", "lte": "__le__"}[op]
    return getattr(target, operator)(sa.literal(value))  # type: ignore[no-any-return]


def order_by(view: JsonView, sort: tuple[str, ...], descending: bool) -> list[Expr]:
    if len(sort) == 1 and sort[0] in ("id", "version", "created_at", "updated_at"):
        keys: list[Expr] = [documents.c[sort[0]]]
    else:
        keys = view.sort_keys(sort)
    keys.append(documents.c.id)
    return [k.desc() if descending else k.asc() for k in keys]
