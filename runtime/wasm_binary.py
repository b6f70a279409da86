"""The custom sections of a plugin module, read once per load.

The manifest (``arcana.manifest``, TOML) and, for gRPC, the descriptor set
(``arcana.descriptors``) travel inside the module as custom sections written
by ``arcana plugin build``. The reader is the SDK tooling's (one
implementation for the writer and the reader); this adapter maps its format
error into the kernel's tree.
"""

from __future__ import annotations

from arcana.errors import WasmFormatError
from arcana_sdk import wasm_sections

MANIFEST_SECTION = wasm_sections.MANIFEST_SECTION
DESCRIPTORS_SECTION = wasm_sections.DESCRIPTORS_SECTION
SCHEMAS_SECTION = wasm_sections.SCHEMAS_SECTION


def custom_sections(wasm: bytes) -> dict[str, bytes]:
    """Name -> payload; the last section of a name wins, as in ``arcana_sdk.wasm_sections.read_custom_section``."""
    try:
        found = wasm_sections.custom_sections(wasm)
    except wasm_sections.WasmFormatError as exc:
        raise WasmFormatError(str(exc)) from exc
    return {section.name: section.payload for section in found}
