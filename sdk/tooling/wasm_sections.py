"""Read and append WebAssembly custom sections (stdlib only).

A wasm module is the 8-byte header (``\\0asm`` + version 1) followed by
sections: one id byte, a LEB128 u32 payload size, then the payload. A custom
section has id 0 and its payload starts with a LEB128-length-prefixed UTF-8
name. A component (the component model: ``\\0asm`` + version ``0d 00`` + layer
``01 00``) frames its top-level sections the same way, custom id 0 included,
so both are read and extended alike; nested modules inside a component are
left untouched (only top-level sections are listed). Arcana embeds the
plugin manifest as the custom section ``arcana.manifest`` appended at the
end of the module::

    wasm = append_custom_section(wasm, MANIFEST_SECTION, toml_bytes)
    assert read_custom_section(wasm, MANIFEST_SECTION) == toml_bytes
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COMPONENT_HEADER",
    "DESCRIPTORS_SECTION",
    "MANIFEST_SECTION",
    "SCHEMAS_SECTION",
    "CustomSection",
    "WasmFormatError",
    "append_custom_section",
    "custom_sections",
    "is_component",
    "read_custom_section",
    "remove_custom_sections",
]

MANIFEST_SECTION = "arcana.manifest"
DESCRIPTORS_SECTION = "arcana.descriptors"
# The JSON Schema files a manifest's routes name: a JSON object {path relative to the plugin folder: schema}.
SCHEMAS_SECTION = "arcana.schemas"
_HEADER = b"\x00asm\x01\x00\x00\x00"
# Component-model preamble: same magic, version 0x0d, layer 1 (a component, not a core module).
COMPONENT_HEADER = b"\x00asm\x0d\x00\x01\x00"
_HEADER_LEN = 8
_CUSTOM_ID = 0


class WasmFormatError(ValueError):
    """The bytes are not a well-formed WebAssembly module."""


@dataclass(frozen=True)
class CustomSection:
    """One custom section: its name, payload and byte span in the module."""

    name: str
    payload: bytes
    start: int
    end: int


def _encode_u32(value: int) -> bytes:
    """Unsigned LEB128 encoding of a u32."""
    if not 0 <= value < 2**32:
        raise ValueError(f"{value} does not fit in a wasm u32")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _decode_u32(data: bytes, pos: int) -> tuple[int, int]:
    """Decode an unsigned LEB128 u32 at ``pos``; return (value, next position)."""
    result = shift = 0
    for i in range(5):
        if pos + i >= len(data):
            raise WasmFormatError(f"truncated LEB128 integer at offset {pos}")
        byte = data[pos + i]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos + i + 1
        shift += 7
    raise WasmFormatError(f"LEB128 integer too long at offset {pos}")


def is_component(wasm: bytes) -> bool:
    """True when ``wasm`` starts with the component-model preamble (not a core module)."""
    return wasm[:_HEADER_LEN] == COMPONENT_HEADER


def _check_header(wasm: bytes) -> None:
    if wasm[:_HEADER_LEN] not in (_HEADER, COMPONENT_HEADER):
        raise WasmFormatError("not a WebAssembly 1.0 module or component (bad magic or version)")


def _sections(wasm: bytes) -> list[tuple[int, int, int, int]]:
    """All sections as (id, section start, payload start, section end)."""
    _check_header(wasm)
    out, pos = [], _HEADER_LEN
    while pos < len(wasm):
        section_id = wasm[pos]
        size, payload = _decode_u32(wasm, pos + 1)
        end = payload + size
        if end > len(wasm):
            raise WasmFormatError(f"section at offset {pos} runs past the end of the module")
        out.append((section_id, pos, payload, end))
        pos = end
    return out


def custom_sections(wasm: bytes) -> list[CustomSection]:
    """Every custom section of ``wasm``, in module order."""
    found = []
    for section_id, start, payload, end in _sections(wasm):
        if section_id != _CUSTOM_ID:
            continue
        name_len, name_start = _decode_u32(wasm, payload)
        if name_start + name_len > end:
            raise WasmFormatError(f"custom section name at offset {start} is too long")
        try:
            name = wasm[name_start : name_start + name_len].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WasmFormatError(f"custom section name at offset {start} is not UTF-8") from exc
        found.append(CustomSection(name, bytes(wasm[name_start + name_len : end]), start, end))
    return found


def read_custom_section(wasm: bytes, name: str) -> bytes | None:
    """Payload of the last custom section called ``name``, or None."""
    matches = [s.payload for s in custom_sections(wasm) if s.name == name]
    return matches[-1] if matches else None


def remove_custom_sections(wasm: bytes, name: str) -> bytes:
    """``wasm`` without any custom section called ``name``."""
    out, pos = bytearray(), 0
    for section in custom_sections(wasm):
        if section.name == name:
            out += wasm[pos : section.start]
            pos = section.end
    return bytes(out + wasm[pos:])


def append_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """``wasm`` with a custom section ``name`` carrying ``payload`` appended."""
    _sections(wasm)  # validates the module structure before we extend it
    encoded_name = name.encode("utf-8")
    body = _encode_u32(len(encoded_name)) + encoded_name + payload
    return bytes(wasm) + bytes([_CUSTOM_ID]) + _encode_u32(len(body)) + body
