"""The custom sections of a plugin binary, read once per load.

The manifest (``arcana.manifest``, TOML) and, for gRPC, the descriptor set
(``arcana.descriptors``) travel inside the binary as custom sections written
by ``arcana plugin build``. The reader is the SDK tooling's (one
implementation for the writer and the reader); this adapter maps its format
error into the kernel's tree.

A binary is a core module (``\\0asm`` + version 1, Extism plugins) or a
WebAssembly component (``\\0asm`` + version 0x0d, layer 1: Python plugins).
At the top level both are the same sequence of (id, size, payload) sections
and a custom section has id 0 in both, so a component's top-level custom
sections are read with the module reader (a component's nested core modules
are payloads of other sections: their own custom sections are not the
plugin's and are not read).
"""

from __future__ import annotations

from arcana.errors import WasmFormatError
from arcana_sdk import wasm_sections

MANIFEST_SECTION = wasm_sections.MANIFEST_SECTION
DESCRIPTORS_SECTION = wasm_sections.DESCRIPTORS_SECTION
SCHEMAS_SECTION = wasm_sections.SCHEMAS_SECTION
MODULE_PREAMBLE = b"\x00asm\x01\x00\x00\x00"
COMPONENT_PREAMBLE = b"\x00asm\x0d\x00\x01\x00"


def is_component(wasm: bytes) -> bool:
    """The binary is a WebAssembly component (its preamble), not a core module."""
    return wasm[:8] == COMPONENT_PREAMBLE


def custom_sections(wasm: bytes) -> dict[str, bytes]:
    """Name -> payload; the last section of a name wins, as in ``arcana_sdk.wasm_sections.read_custom_section``."""
    if is_component(wasm):  # same framing after the preamble: read it as a module's (offsets are unchanged)
        wasm = MODULE_PREAMBLE + wasm[len(COMPONENT_PREAMBLE) :]
    try:
        found = wasm_sections.custom_sections(wasm)
    except wasm_sections.WasmFormatError as exc:
        raise WasmFormatError(str(exc)) from exc
    return {section.name: section.payload for section in found}
