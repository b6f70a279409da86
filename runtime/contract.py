"""A plugin version's REST contract: its routes' schemas, resolved and compiled once at load.

The manifest names schemas (files embedded in the module's ``arcana.schemas``
section, or protobuf messages of its descriptors); ``build_contract`` resolves
every reference, checks each schema against the JSON Schema 2020-12
meta-schema, and compiles a validator for it. The edge then checks a request
with ``RouteContract.check_request`` before the plugin is called.

Two validators per schema, on purpose: fastjsonschema compiles to Python and
is the gate every request passes (fast, but it stops at the first error);
only a refused value is validated again by jsonschema, to list every field
error. A schema keyword fastjsonschema does not implement would make the two
disagree, so such a schema is refused at load (UNSUPPORTED_KEYWORDS).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastjsonschema
import jsonschema
from jsonschema.exceptions import SchemaError

from arcana.descriptors import DescriptorSet
from arcana.envelopes import UNPARSED, is_json_type
from arcana.errors import DescriptorError, FieldProblem, Problem, ValidationFailed
from arcana.jsonio import client_json
from arcana.manifest import Manifest, QueryParam, Route, SchemaRef
from arcana.proto_schema import DIALECT, message_schema
from arcana.wasm_binary import SCHEMAS_SECTION

# 2020-12 keywords the compiled validator (fastjsonschema: drafts 4 to 7) does not implement.
UNSUPPORTED_KEYWORDS = frozenset(
    {
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$anchor",
    }
)
# A refused request lists at most this many field errors (a huge bad array must not make a huge answer).
MAX_FIELD_ERRORS = 20
# Errors read from the full validator before sorting and cutting to MAX_FIELD_ERRORS.
MAX_ERRORS_READ = 200
_REQUIRED_RE = re.compile(r"^'(.+)' is a required property$")


class ContractInvalid(Exception):
    """The manifest's schemas do not resolve or are not valid schemas; ``problems`` says each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def pointer_token(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(prefix: str, parts: Iterable[str | int]) -> str:
    return prefix + "".join("/" + pointer_token(p) for p in parts)


@dataclass(frozen=True)
class CompiledSchema:
    """A schema with its two validators (see the module docstring)."""

    schema: dict[str, Any]
    gate: Callable[[Any], Any]
    full: jsonschema.protocols.Validator

    @classmethod
    def compile(cls, schema: dict[str, Any]) -> CompiledSchema:
        full_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        checker = full_cls.FORMAT_CHECKER
        # use_default=False: the gate must not write a schema's defaults into the body, which the envelope
        # reuses as parsed (the plugin sees what the client sent).
        return cls(schema, fastjsonschema.compile(schema, use_default=False), full_cls(schema, format_checker=checker))

    def errors(self, value: Any, prefix: str) -> list[FieldProblem]:
        """The field errors of ``value`` (pointers under ``prefix``); [] when it conforms."""
        try:
            self.gate(value)
            return []
        except fastjsonschema.JsonSchemaValueException as gate_error:
            found: list[tuple[list[str | int], str]] = []
            # Bounded: a huge body of bad items must not cost a huge list; sorted so answers are stable.
            for error in itertools.islice(self.full.iter_errors(value), MAX_ERRORS_READ):
                path: list[str | int] = list(error.absolute_path)
                missing = _REQUIRED_RE.match(error.message) if error.validator == "required" else None
                if missing:  # point at the missing field, not at the object that lacks it
                    found.append(([*path, missing.group(1)], "is required"))
                else:
                    found.append((path, error.message))
            if not found:  # the two disagree (a format only one of them checks): the gate's word stands
                parts: list[str | int] = [p for p in gate_error.path[1:] if isinstance(p, str | int)]
                found.append((parts, gate_error.message))
            found.sort(key=lambda item: [(0, p, "") if isinstance(p, int) else (1, 0, p) for p in item[0]])
            return [FieldProblem(pointer(prefix, path), reason) for path, reason in found[:MAX_FIELD_ERRORS]]


# Path and query values arrive as strings; each type is a parser (None: not that type).
def _integer(text: str) -> int | None:
    try:
        return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else None
    except ValueError:  # over Python's int digit limit (4300): the URL may hold 8 KB of digits, a 500 before
        return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _boolean(text: str) -> bool | None:
    return {"true": True, "false": False}.get(text)


def _uuid(text: str) -> str | None:
    try:
        uuid.UUID(text)
    except ValueError:
        return None
    return text if len(text) == 36 else None


_PARSERS: dict[str, tuple[Callable[[str], object], str]] = {
    "string": (lambda text: text, ""),
    "integer": (_integer, "must be an integer"),
    "number": (_number, "must be a number"),
    "boolean": (_boolean, "must be true or false"),
    "uuid": (_uuid, "must be a UUID, e.g. 123e4567-e89b-12d3-a456-426614174000"),
}
# The JSON Schema of each parameter type (for the OpenAPI document).
PARAM_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "uuid": {"type": "string", "format": "uuid"},
}


def _param_error(kind: str, text: str) -> str | None:
    parse, reason = _PARSERS[kind]
    return None if parse(text) is not None else reason


@dataclass(frozen=True)
class RouteContract:
    """One route's contract: what the edge checks before the plugin is called, and its declared answers."""

    route: Route
    request: CompiledSchema | None
    # Status -> the answer's schema; None: declared without a body.
    responses: Mapping[int, CompiledSchema | None] = field(default_factory=dict)
    # Whether a request is checked at all (a body schema, typed path parameters, or query parameters).
    checks_request: bool = field(init=False, default=False)

    @property
    def params(self) -> dict[str, str]:
        """Every path parameter -> its type ("string" when the manifest names none)."""
        names = [v for k, v in self.route.path.segments if k == "param"]
        return {name: self.route.params.get(name, "string") for name in names}

    @property
    def query(self) -> Mapping[str, QueryParam]:
        return self.route.query

    @property
    def request_schema(self) -> dict[str, Any] | None:
        return None if self.request is None else self.request.schema

    @property
    def response_schemas(self) -> dict[int, dict[str, Any] | None]:
        return {status: None if s is None else s.schema for status, s in sorted(self.responses.items())}

    def __post_init__(self) -> None:
        # Read on every call: worked out once.
        checks = self.request is not None or bool(self.route.params) or bool(self.route.query)
        object.__setattr__(self, "checks_request", checks)

    def check_request(
        self,
        params: Mapping[str, str],
        query: Callable[[str], list[str]],
        body: bytes,
        content_type: str = "application/json",
        content_encoding: str = "",
    ) -> list[FieldProblem]:
        """Every field error of a request; ``query(name)`` gives the values of a query parameter."""
        return self.check_request_parsed(params, query, body, content_type, content_encoding)[0]

    def check_request_parsed(
        self,
        params: Mapping[str, str],
        query: Callable[[str], list[str]],
        body: bytes,
        content_type: str = "application/json",
        content_encoding: str = "",
    ) -> tuple[list[FieldProblem], Any]:
        """``check_request``, and the body as parsed for its check (``UNPARSED`` when none was)."""
        found: list[FieldProblem] = []
        for name, kind in self.route.params.items():
            reason = _param_error(kind, params.get(name, ""))
            if reason:
                found.append(FieldProblem(f"/path/{pointer_token(name)}", reason))
        for name, spec in self.route.query.items():
            values = query(name)
            if not values and spec.required:
                found.append(FieldProblem(f"/query/{pointer_token(name)}", "is required"))
            for value in values[:1]:
                reason = _param_error(spec.type, value)
                if reason:
                    found.append(FieldProblem(f"/query/{pointer_token(name)}", reason))
        parsed: Any = UNPARSED
        if self.request is not None:
            problems, parsed = self._check_body(body, content_type, content_encoding)
            found += problems
        return found[:MAX_FIELD_ERRORS], parsed

    def check_body(self, body: bytes, content_type: str, content_encoding: str) -> list[FieldProblem]:
        """The body against the request schema, parsed as the envelope will parse it (arcana.jsonio)."""
        return self._check_body(body, content_type, content_encoding)[0]

    def _check_body(self, body: bytes, content_type: str, content_encoding: str) -> tuple[list[FieldProblem], Any]:
        assert self.request is not None
        if not body.strip():
            return [FieldProblem("/body", "is required: send a JSON body")], UNPARSED
        # A json-ABI plugin gets a body of another type as base64 bytes, which no schema describes.
        if self.route.abi == "json" and not is_json_type(content_type):
            return [FieldProblem("/body", "must be JSON: send it with content-type: application/json")], UNPARSED
        try:
            value = client_json(body, content_encoding)
        except ValidationFailed as exc:
            return [FieldProblem("/body", exc.message)], UNPARSED
        return self.request.errors(value, "/body"), value

    def check_response(self, status: int, body: bytes) -> list[FieldProblem] | None:
        """The answer's mismatches with its declared schema; None when the status declares none."""
        declared = self.responses.get(status)
        if declared is None:
            if status in self.responses and body.strip():
                return [FieldProblem("/body", f"status {status} is declared without a body")]
            return None
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return [FieldProblem("/body", f"is not valid JSON: {exc}")]
        return declared.errors(value, "/body")


@dataclass(frozen=True)
class Contract:
    """A plugin version's contract: a RouteContract for each route that declares one."""

    routes: Mapping[tuple[str, str], RouteContract] = field(default_factory=dict)
    # Reference (file path or message name) -> its JSON Schema, as resolved.
    schemas: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    def route(self, route: Route) -> RouteContract | None:
        return self.routes.get((route.method, route.path.raw))


EMPTY = Contract()


def parse_schemas_section(raw: bytes | None) -> tuple[dict[str, Any], list[Problem]]:
    """The embedded (or sidecar) schemas: {path: schema}; problems when it is not that JSON object."""
    if raw is None:
        return {}, []
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return {}, [Problem("schemas", f"the schemas are not valid JSON: {exc}", "rebuild with `arcana plugin build`")]
    if not isinstance(data, dict):
        return {}, [Problem("schemas", "the schemas are not a JSON object", "rebuild with `arcana plugin build`")]
    return data, []


def _where(manifest: Manifest) -> dict[SchemaRef, str]:
    """Each reference -> the manifest field that first names it (for problems)."""
    where: dict[SchemaRef, str] = {}
    for i, route in enumerate(manifest.routes):
        if route.request is not None:
            where.setdefault(route.request, f"route[{i}].request")
        for status, ref in sorted(route.responses.items()):
            if ref is not None:
                where.setdefault(ref, f"route[{i}].responses.{status}")
    return where


def _keywords(value: Any) -> Iterable[tuple[str, Any]]:
    """Every (key, value) pair of every object in a JSON document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _keywords(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keywords(item)


def schema_problems(schema: Any, where: str, name: str) -> list[Problem]:
    """What is wrong with one JSON Schema: the meta-schema, remote $refs, keywords the edge cannot check."""
    if not isinstance(schema, dict | bool):
        return [Problem(where, f"{name} is not a JSON Schema (an object)", "write the schema as a JSON object")]
    if isinstance(schema, bool):
        return []
    dialect = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        dialect.check_schema(schema)
    except SchemaError as exc:
        at = "/".join(map(str, exc.absolute_path))
        return [Problem(where, f"{name} is not a valid JSON Schema{f' at {at}' if at else ''}: {exc.message}")]
    problems = []
    for key, value in _keywords(schema):
        if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
            problems.append(
                Problem(where, f"{name} has a $ref to {value!r} outside itself", "use local refs: #/$defs/...")
            )
        elif key in UNSUPPORTED_KEYWORDS:
            problems.append(
                Problem(where, f"{name} uses {key}, which the edge validator does not support", "express it otherwise")
            )
    return problems


def resolve(
    ref: SchemaRef, files: Mapping[str, Any], descriptors: DescriptorSet | None, where: str
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """One reference -> its JSON Schema, or the problems that keep it from resolving."""
    if ref.kind == "file":
        if ref.name not in files:
            return None, [Problem(where, f"schema file {ref.name} is not in the module", _missing_file_fix(ref.name))]
        schema = files[ref.name]
        problems = schema_problems(schema, where, ref.name)
        if isinstance(schema, bool):
            schema = {} if schema else {"not": {}}
        return (None if problems else schema), problems
    if descriptors is None:
        fix = "add the message's .proto to the plugin's proto/ folder and rebuild"
        return None, [Problem(where, f"{ref.name} names a protobuf message but the module has no descriptors", fix)]
    try:
        return message_schema(descriptors, ref.name), []
    except DescriptorError as exc:
        return None, [Problem(where, str(exc), "name a message that the plugin's .proto files define (package.Name)")]


def _missing_file_fix(name: str) -> str:
    return f"create {name} in the plugin folder and rebuild with `arcana plugin build`"


def build_contract(manifest: Manifest, files: Mapping[str, Any], descriptors: DescriptorSet | None) -> Contract:
    """Resolve and compile every schema the manifest names; ContractInvalid lists every problem."""
    problems: list[Problem] = []
    resolved: dict[SchemaRef, CompiledSchema] = {}
    for ref, where in _where(manifest).items():
        schema, found = resolve(ref, files, descriptors, where)
        problems += found
        if schema is not None:
            try:
                resolved[ref] = CompiledSchema.compile(schema)
            except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError) as exc:
                problems.append(Problem(where, f"{ref.name} cannot be compiled: {exc}", "simplify the schema"))
    if problems:
        raise ContractInvalid(problems)
    routes: dict[tuple[str, str], RouteContract] = {}
    for route in manifest.routes:
        if not route.has_contract:
            continue
        request = resolved[route.request] if route.request is not None else None
        responses = {s: None if r is None else resolved[r] for s, r in route.responses.items()}
        routes[(route.method, route.path.raw)] = RouteContract(route, request, responses)
    return Contract(routes, {ref.name: c.schema for ref, c in resolved.items()})


__all__ = [
    "DIALECT",
    "EMPTY",
    "PARAM_SCHEMAS",
    "SCHEMAS_SECTION",
    "CompiledSchema",
    "Contract",
    "ContractInvalid",
    "FieldProblem",
    "RouteContract",
    "build_contract",
    "parse_schemas_section",
    "resolve",
    "schema_problems",
]
