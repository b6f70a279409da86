"""Shared test machinery: plugins built from source once per run, cached by content."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from pathlib import Path

import pytest

from database_fixtures import (  # noqa: F401  (PostgreSQL schemas, Redis)
    _postgres,
    fresh_postgres_url,
    postgres_url,
    redis_client,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "plugins"
# Built fixtures are cached by a hash of their sources and of the SDK, so a
# second run (and CI with a warm cache folder) skips the guest toolchains.
CACHE = Path(os.environ.get("ARCANA_TEST_CACHE", ROOT / ".cache" / "test-plugins"))
SOURCE_SUFFIXES = {".zig", ".c", ".h", ".ts", ".toml", ".json"}


def source_hash(*dirs: Path) -> str:
    digest = hashlib.sha256()
    for d in dirs:
        for path in sorted(d.rglob("*")):
            if path.is_file() and path.suffix in SOURCE_SUFFIXES and "node_modules" not in path.parts:
                digest.update(str(path.relative_to(d)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def build_cached(src: Path) -> Path:
    """Build a plugin folder (or reuse the cached build of the same sources)."""
    from arcana_sdk.build import build_plugin

    sources = source_hash(src, ROOT / "sdk" / "zig", ROOT / "sdk" / "c", ROOT / "sdk" / "assemblyscript")
    # The toolchain is part of the key: a cache kept across checkouts never serves another compiler's output.
    key = hashlib.sha256(f"{sources} zig={_version('ziglang')}".encode()).hexdigest()[:16]
    out = CACHE / f"{src.name}-{key}.wasm"
    if not out.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        build_plugin(src, tmp)
        tmp.replace(out)
    return out


@pytest.fixture(scope="session")
def fixture_wasm() -> dict[str, Path]:
    """Every fixture plugin in tests/fixtures/plugins, built: name -> .wasm path."""
    # Python components (app.py) are built by tests/component_build.py: slower, and only where needed.
    return {
        d.name: build_cached(d)
        for d in sorted(FIXTURES.iterdir())
        if (d / "plugin.toml").exists() and not (d / "app.py").exists()
    }


def install(wasm: Path, folder: Path, name: str | None = None) -> Path:
    """Drop a built plugin into a served folder atomically, as an operator should."""
    target = folder / f"{name or wasm.stem.rsplit('-', 1)[0]}.wasm"
    tmp = folder / f".{target.name}.part"
    shutil.copyfile(wasm, tmp)
    tmp.replace(target)
    return target


def build_variant(name: str, workdir: Path, replace: dict[str, str]) -> Path:
    """Build a fixture with some source text replaced (e.g. a new version string)."""
    src = workdir / f"{name}-src-{hashlib.sha256(repr(sorted(replace.items())).encode()).hexdigest()[:8]}"
    if not src.exists():
        shutil.copytree(FIXTURES / name, src)
        for path in src.rglob("*"):
            if path.is_file() and path.suffix in SOURCE_SUFFIXES:
                text = path.read_text()
                for old, new in replace.items():
                    text = text.replace(old, new)
                path.write_text(text)
    built = build_cached(src)
    return built
