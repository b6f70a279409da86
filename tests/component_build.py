"""Build the Python test components (tests/fixtures/plugins/py*/), cached.

A stubbed-WASI build is `arcana plugin build`'s (``arcana_sdk.build.build_plugin``).
A build that keeps WASI imports (to prove the kernel refuses them) is made
here, as no author tool makes one: the plugin's own world from
sdk/wit/arcana.wit (the interfaces its manifest's [capabilities] request,
plus clock, random and config), componentize-py without ``--stub-wasi``, and
the manifest appended as the ``arcana.manifest`` custom section. A build
takes about ten seconds, so each is cached under $ARCANA_TEST_CACHE by a hash
of its sources, the WIT, the guest SDK and the builder's options.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "plugins"
WIT = ROOT / "sdk" / "wit" / "arcana.wit"
COMPONENTIZE_PY = "0.25.1"
# The grant-free interfaces every plugin imports.
ALWAYS = ("clock", "random", "config")
# Grants that are interfaces of the package (events.kernel, for one, unlocks no function).
INTERFACES = frozenset({"log", "auth", "auth-issue", "store", "queue", "events", "http"})


def _leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def custom_section(name: str, payload: bytes) -> bytes:
    """A custom section (id 0): the same bytes in a component as in a core module."""
    body = _leb(len(name.encode())) + name.encode() + payload
    return b"\x00" + _leb(len(body)) + body


def world_wit(manifest: dict[str, object]) -> str:
    """The package's interfaces and a world ``plugin`` importing only what ``manifest`` requests."""
    text = WIT.read_text()
    head = text[: text.index("world plugin {")]
    caps = manifest.get("capabilities", {})
    assert isinstance(caps, dict)
    wanted = sorted(g.replace(".", "-") for g, on in caps.items() if on and g.replace(".", "-") in INTERFACES)
    imports = "".join(f"  import {name};\n" for name in [*wanted, *ALWAYS])
    exports = (
        "  export handle: func(handler: string, input: list<u8>) -> list<u8>;\n"
        "  export handlers: func() -> list<string>;\n"
    )
    return f"{head}world plugin {{\n{imports}{exports}}}\n"


def build_component(src: Path, out: Path, *, stub_wasi: bool = True) -> Path:
    if stub_wasi:
        from arcana_sdk.build import build_plugin

        build_plugin(src, out)
        return out
    manifest_text = (src / "plugin.toml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        wit = Path(tmp) / "wit"
        wit.mkdir()
        (wit / "arcana.wit").write_text(world_wit(tomllib.loads(manifest_text)))
        raw = Path(tmp) / "out.wasm"
        command = [str(Path(sys.executable).parent / "componentize-py"), "-d", str(wit), "-w", "plugin"]
        command += ["componentize", "app", "-p", str(src), "-o", str(raw)]
        subprocess.run(command, check=True, capture_output=True, cwd=tmp)
        out.write_bytes(raw.read_bytes() + custom_section("arcana.manifest", manifest_text.encode()))
    return out


def source_key(src: Path, stub_wasi: bool) -> str:
    digest = hashlib.sha256(f"{COMPONENTIZE_PY} stub={stub_wasi}".encode())
    for path in sorted(src.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".toml", ".proto"):
            digest.update(str(path.relative_to(src)).encode() + path.read_bytes())
    digest.update(WIT.read_bytes())
    # What `arcana plugin build` puts in a component besides the app: the guest SDK and the builder.
    for path in sorted([*(ROOT / "sdk" / "python").rglob("*.py"), *(ROOT / "sdk" / "tooling").glob("*build.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_cached(name: str, cache: Path, *, stub_wasi: bool = True) -> Path:
    """The component of fixture ``name``, built once per source hash."""
    src = FIXTURES / name
    out = cache / f"{name}-{source_key(src, stub_wasi)}.wasm"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        build_component(src, tmp, stub_wasi=stub_wasi)
        tmp.replace(out)
    return out


def toolchain_missing() -> bool:
    return shutil.which("componentize-py", path=str(Path(sys.executable).parent)) is None


if __name__ == "__main__":  # build them all: python tests/component_build.py CACHE
    for fixture in ("pyhost", "pyhostile"):
        print(build_cached(fixture, Path(sys.argv[1])))
    print(build_cached("pywasi", Path(sys.argv[1]), stub_wasi=False))
