"""A protobuf message -> the JSON Schema of its proto3 JSON form.

A route may name a message of the plugin's own descriptors as its request or
response schema (``request = "notes.v1.CreateNote"``), so that one .proto
describes both edges. The REST edge sees proto3 JSON, so the schema follows
that mapping: lowerCamelCase names (the .proto names are accepted too, as
parsers accept both), 64-bit integers as decimal strings (numbers accepted),
enums as their names, repeated fields as arrays, maps as objects, and nested
messages under ``$defs`` (so recursive messages terminate). Every field is
optional, as in proto3.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from arcana.descriptors import DescriptorSet
from arcana.errors import DescriptorError

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_INT64 = "^-?[0-9]+$"
_UINT64 = "^[0-9]+$"

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    # proto3 JSON writes 64-bit integers as strings (JavaScript numbers lose precision); parsers take both.
    FieldDescriptor.TYPE_INT64: {"type": ["string", "integer"], "pattern": _INT64},
    FieldDescriptor.TYPE_SINT64: {"type": ["string", "integer"], "pattern": _INT64},
    FieldDescriptor.TYPE_SFIXED64: {"type": ["string", "integer"], "pattern": _INT64},
    FieldDescriptor.TYPE_UINT64: {"type": ["string", "integer"], "pattern": _UINT64, "minimum": 0},
    FieldDescriptor.TYPE_FIXED64: {"type": ["string", "integer"], "pattern": _UINT64, "minimum": 0},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# The well-known types have their own JSON forms (not the object of their fields).
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object", "maxProperties": 0},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.DoubleValue": {"type": ["number", "null"]},
    "google.protobuf.FloatValue": {"type": ["number", "null"]},
    "google.protobuf.Int32Value": {"type": ["integer", "null"]},
    "google.protobuf.UInt32Value": {"type": ["integer", "null"], "minimum": 0},
    "google.protobuf.Int64Value": {"type": ["string", "integer", "null"], "pattern": _INT64},
    "google.protobuf.UInt64Value": {"type": ["string", "integer", "null"], "pattern": _UINT64},
    "google.protobuf.BoolValue": {"type": ["boolean", "null"]},
    "google.protobuf.StringValue": {"type": ["string", "null"]},
    "google.protobuf.BytesValue": {"type": ["string", "null"], "contentEncoding": "base64"},
}


def message_schema(descriptors: DescriptorSet, full_name: str) -> dict[str, Any]:
    """The JSON Schema (2020-12) of ``full_name``'s proto3 JSON; DescriptorError when it is not in the set."""
    try:
        message = descriptors.pool.FindMessageTypeByName(full_name)
    except KeyError:
        raise DescriptorError(f"message {full_name} is not in the plugin's descriptors") from None
    defs: dict[str, dict[str, Any]] = {}
    root = _message(message, defs)
    if not defs:
        return {"$schema": DIALECT, **root}
    return {"$schema": DIALECT, **root, "$defs": defs}


def _message(message: Descriptor, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    properties: dict[str, Any] = {}
    for fld in message.fields:
        schema = _field(fld, defs)
        properties[fld.json_name] = schema
        if fld.name != fld.json_name:  # parsers accept the .proto name as well
            properties[fld.name] = schema
    return {"type": "object", "title": message.full_name, "properties": properties}


def _ref(message: Descriptor, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A nested message: once under $defs (a placeholder first, so that recursion ends), then by $ref."""
    if message.full_name in _WELL_KNOWN:
        return dict(_WELL_KNOWN[message.full_name])
    if message.full_name not in defs:
        defs[message.full_name] = {}
        defs[message.full_name] = _message(message, defs)
    return {"$ref": f"#/$defs/{message.full_name}"}


def _single(fld: FieldDescriptor, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if fld.message_type is not None:
        return _ref(fld.message_type, defs)
    if fld.enum_type is not None:
        if fld.enum_type.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        return {"type": "string", "enum": [v.name for v in fld.enum_type.values]}
    return dict(_SCALARS[fld.type])


def _field(fld: FieldDescriptor, defs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    message = fld.message_type
    if message is not None and message.GetOptions().map_entry:
        value = _single(message.fields_by_name["value"], defs)
        return {"type": "object", "additionalProperties": value}
    if _repeated(fld):
        return {"type": "array", "items": _single(fld, defs)}
    return _single(fld, defs)


def _repeated(fld: FieldDescriptor) -> bool:
    # protobuf 5 has ``label``, later versions ``is_repeated`` (and deprecate ``label``).
    is_repeated = getattr(fld, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    legacy: Any = fld
    return bool(legacy.label == FieldDescriptor.LABEL_REPEATED)
