"""Reads the custom sections of a WebAssembly binary (pure Python, no engine).

The manifest (`arcana.manifest`, TOML) and, for gRPC, the descriptor set
(`arcana.descriptors`) travel inside the module as custom sections written by
`arcana plugin build`.
"""

from __future__ import annotations

MAGIC = b"\x00asm"
MANIFEST_SECTION = "arcana.manifest"
DESCRIPTORS_SECTION = "arcana.descriptors"


class WasmFormatError(ValueError):
    pass


def _leb_u32(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise WasmFormatError("truncated or malformed LEB128 integer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def custom_sections(data: bytes) -> dict[str, bytes]:
    """Name -> payload of every custom section (the first one wins on duplicates)."""
    if data[:4] != MAGIC:
        raise WasmFormatError("not a WebAssembly module (bad magic number)")
    if len(data) < 8:
        raise WasmFormatError("truncated WebAssembly header")
    sections: dict[str, bytes] = {}
    pos = 8
    while pos < len(data):
        section_id = data[pos]
        size, body = _leb_u32(data, pos + 1)
        end = body + size
        if end > len(data):
            raise WasmFormatError(f"section at byte {pos} runs past the end of the file (truncated?)")
        if section_id == 0:
            name_len, name_at = _leb_u32(data, body)
            if name_at + name_len > end:
                raise WasmFormatError(f"custom section at byte {pos} has a bad name length")
            name = data[name_at : name_at + name_len].decode("utf-8", "replace")
            sections.setdefault(name, data[name_at + name_len : end])
        pos = end
    return sections
