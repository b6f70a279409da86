"""A plugin's contract (arcana.contract) as OpenAPI pieces: named schemas, parameters, bodies, answers.

A route's schemas go under ``components.schemas`` once per plugin version, named
``<plugin>.<reference>`` (``notes.schemas.note``, ``notes.notes.v1.Note``), and operations point at
them. A schema's local references (``#/$defs/...``) are relative to the schema itself; moved into the
document they would point at its root, so they are rewritten to the component's own place.
"""

from __future__ import annotations

import re
from typing import Any

from arcana.contract import PARAM_SCHEMAS, RouteContract
from arcana.proto_schema import DIALECT, message_schema
from arcana.registry import LoadedPlugin

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def component_name(plugin: str, reference: str) -> str:
    """A components.schemas key (letters, digits, '.', '-', '_') for one of a plugin's schema references."""
    return _NAME_UNSAFE.sub("_", f"{plugin}.{reference.removesuffix('.json').replace('/', '.')}")


def component_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _relocated(value: Any, base: str) -> Any:
    """``value`` with every local ``$ref`` ("#/...") made relative to ``base`` instead of the document root."""
    if isinstance(value, dict):
        out = {k: _relocated(v, base) for k, v in value.items() if k != "$id"}
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            out["$ref"] = base + ref[1:]
        return out
    if isinstance(value, list):
        return [_relocated(v, base) for v in value]
    return value


def as_component(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    moved: dict[str, Any] = _relocated(schema, f"#/components/schemas/{name}")
    if moved.get("$schema") == DIALECT:  # the document's own dialect (jsonSchemaDialect): said once there
        del moved["$schema"]
    return moved


def plugin_components(plugin: LoadedPlugin) -> dict[str, dict[str, Any]]:
    """Every schema the plugin's routes name, and the messages of its gRPC methods, as components."""
    out = {
        component_name(plugin.name, ref): as_component(component_name(plugin.name, ref), schema)
        for ref, schema in sorted(plugin.contract.schemas.items())
    }
    if plugin.descriptors is not None:
        for rpc in plugin.rpc.values():
            for message in (rpc.input_type, rpc.output_type):
                full_name = message.DESCRIPTOR.full_name
                name = component_name(plugin.name, full_name)
                if name not in out:
                    out[name] = as_component(name, message_schema(plugin.descriptors, full_name))
    return out


def path_schemas(contract: RouteContract | None) -> dict[str, dict[str, Any]]:
    """Path parameter -> its schema, by the route's own parameter names."""
    if contract is None:
        return {}
    return {name: dict(PARAM_SCHEMAS[kind]) for name, kind in contract.params.items()}


def query_parameters(contract: RouteContract | None) -> list[dict[str, Any]]:
    if contract is None:
        return []
    return [
        {"name": name, "in": "query", "required": spec.required, "schema": dict(PARAM_SCHEMAS[spec.type])}
        for name, spec in contract.query.items()
    ]


def request_body(plugin: str, contract: RouteContract | None) -> dict[str, Any] | None:
    """The declared body: required, JSON, of its schema; None when the route declares none."""
    if contract is None or contract.route.request is None:
        return None
    schema = component_ref(component_name(plugin, contract.route.request.name))
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def declared_responses(plugin: str, contract: RouteContract | None) -> dict[int, dict[str, Any] | None]:
    """Status -> the answer's schema (a component reference), None for an answer declared without a body."""
    if contract is None:
        return {}
    return {
        status: None if ref is None else component_ref(component_name(plugin, ref.name))
        for status, ref in sorted(contract.route.responses.items())
    }
