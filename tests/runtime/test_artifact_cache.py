"""The compiled-artifact cache: only what this kernel wrote for this key is ever deserialized.

The first tests pin the cache's own rules with a stand-in deserializer; the last ones load a real
component through the real component engine (toolchain: componentize-py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from arcana.config import load_config
from arcana.engine.artifact_cache import MAC_BYTES, MAGIC, ArtifactCache, CacheFolderRefused
from arcana.engine.component_engine import ComponentEngine
from arcana.engine.factory import kernel_engine
from arcana.types import CallContext
from component_build import build_cached, toolchain_missing
from conftest import CACHE

SHA_A, SHA_B = "a" * 64, "b" * 64


def cache(folder: Path, max_bytes: int = 1 << 20, fingerprint: str = "engine 1") -> ArtifactCache:
    return ArtifactCache(folder, max_bytes, fingerprint)


def loaded(store: ArtifactCache, sha: str) -> bytes | None:
    return store.load(sha, lambda body: body)


def test_an_artifact_stored_is_loaded_back_and_counted_as_a_hit(tmp_path: Path) -> None:
    store = cache(tmp_path / "artifacts")
    assert loaded(store, SHA_A) is None
    store.store(SHA_A, b"compiled code")
    assert loaded(store, SHA_A) == b"compiled code"
    assert (store.stats.hits, store.stats.misses, store.stats.stored) == (1, 1, 1)


def test_the_folder_is_created_private_and_the_artifacts_too(tmp_path: Path) -> None:
    store = cache(tmp_path / "deep" / "artifacts")
    store.store(SHA_A, b"x")
    assert (store.folder.stat().st_mode & 0o777) == 0o700
    assert (store.path(SHA_A).stat().st_mode & 0o777) == 0o600
    assert ((store.folder / ".key").stat().st_mode & 0o777) == 0o600


def refused_metric() -> float:
    return REGISTRY.get_sample_value("arcana_component_artifacts_total", {"outcome": "refused"}) or 0.0


def test_a_tampered_artifact_is_refused_and_deleted(tmp_path: Path) -> None:
    before = refused_metric()
    store = cache(tmp_path / "artifacts")
    store.store(SHA_A, b"compiled code")
    path = store.path(SHA_A)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert loaded(store, SHA_A) is None
    assert store.stats.refused == 1 and not path.exists()
    assert refused_metric() == before + 1  # operators see it on /metrics


def test_an_artifact_written_for_another_key_is_refused_under_this_one(tmp_path: Path) -> None:
    store = cache(tmp_path / "artifacts")
    store.store(SHA_B, b"code of b")
    os.replace(store.path(SHA_B), store.path(SHA_A))  # a valid file of another component, renamed
    assert loaded(store, SHA_A) is None
    assert store.stats.refused == 1 and not store.path(SHA_A).exists()


def test_an_artifact_of_another_cache_secret_is_refused(tmp_path: Path) -> None:
    theirs, ours = cache(tmp_path / "theirs"), cache(tmp_path / "ours")
    theirs.store(SHA_A, b"their code")
    ours.path(SHA_A).write_bytes(theirs.path(SHA_A).read_bytes())
    assert loaded(ours, SHA_A) is None
    assert ours.stats.refused == 1


def test_a_file_without_the_header_is_refused(tmp_path: Path) -> None:
    store = cache(tmp_path / "artifacts")
    store.path(SHA_A).write_bytes(b"\x00" * (len(MAGIC) + MAC_BYTES + 10))
    assert loaded(store, SHA_A) is None and store.stats.refused == 1


def test_another_engine_fingerprint_never_sees_the_artifact(tmp_path: Path) -> None:
    cache(tmp_path / "artifacts", fingerprint="wasmtime 50").store(SHA_A, b"code")
    upgraded = cache(tmp_path / "artifacts", fingerprint="wasmtime 51")
    assert loaded(upgraded, SHA_A) is None
    assert upgraded.stats.refused == 0  # a different key: simply not there


def test_an_artifact_the_engine_refuses_is_deleted(tmp_path: Path) -> None:
    store = cache(tmp_path / "artifacts")
    store.store(SHA_A, b"code")

    def refuse(body: bytes) -> bytes:
        raise ValueError("incompatible")

    assert store.load(SHA_A, refuse) is None
    assert store.stats.refused == 1 and not store.path(SHA_A).exists()


def test_the_least_recently_used_artifacts_go_beyond_the_bound(tmp_path: Path) -> None:
    one = len(MAGIC) + MAC_BYTES + 100
    store = cache(tmp_path / "artifacts", max_bytes=2 * one)
    store.store(SHA_A, b"a" * 100)
    store.store(SHA_B, b"b" * 100)
    os.utime(store.path(SHA_A), ns=(1, 1))
    os.utime(store.path(SHA_B), ns=(2, 2))
    assert loaded(store, SHA_A) is not None  # a hit: now the most recent
    store.store("c" * 64, b"c" * 100)
    assert store.path(SHA_A).exists() and not store.path(SHA_B).exists()
    assert store.size() <= 2 * one and store.stats.evicted == 1


def test_a_folder_others_may_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(CacheFolderRefused, match="writable by other users"):
        cache(folder)


def test_a_folder_inside_the_plugins_folder_is_refused(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    with pytest.raises(CacheFolderRefused, match="inside the plugins folder"):
        ArtifactCache(plugins / ".artifacts", 1 << 20, "engine 1", forbidden=plugins)
    assert not (plugins / ".artifacts").exists()


@pytest.fixture(scope="module")
def hostile_wasm() -> bytes:
    return build_cached("pyhostile", CACHE).read_bytes()


def ok(engine: ComponentEngine, wasm: bytes) -> bytes:
    compiled = engine.compile(wasm, [], memory_mb=64, timeout_ms=2000)
    return compiled.instantiate().call("ok", b"{}", CallContext(plugin="pyhostile", version="1.0.0"))


@pytest.mark.toolchain
@pytest.mark.skipif(toolchain_missing(), reason="componentize-py is not installed (the toolchain extra)")
def test_a_second_engine_deserializes_what_the_first_compiled(tmp_path: Path, hostile_wasm: bytes) -> None:
    folder = tmp_path / "artifacts"
    first = ComponentEngine(ArtifactCache(folder, 1 << 30, ComponentEngine.fingerprint()))
    assert b'"ok": true' in ok(first, hostile_wasm)
    assert (first.compiled, first.deserialized) == (1, 0)
    second = ComponentEngine(ArtifactCache(folder, 1 << 30, ComponentEngine.fingerprint()))
    assert b'"ok": true' in ok(second, hostile_wasm)
    assert (second.compiled, second.deserialized) == (0, 1)
    assert second.cache is not None and second.cache.stats.hits == 1


@pytest.mark.toolchain
@pytest.mark.skipif(toolchain_missing(), reason="componentize-py is not installed (the toolchain extra)")
def test_a_tampered_artifact_is_recompiled_and_replaced(tmp_path: Path, hostile_wasm: bytes) -> None:
    folder = tmp_path / "artifacts"
    first = ComponentEngine(ArtifactCache(folder, 1 << 30, ComponentEngine.fingerprint()))
    ok(first, hostile_wasm)
    assert first.cache is not None
    path = first.cache.path(hashlib.sha256(hostile_wasm).hexdigest())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte of machine code
    path.write_bytes(bytes(data))
    second = ComponentEngine(ArtifactCache(folder, 1 << 30, ComponentEngine.fingerprint()))
    assert b'"ok": true' in ok(second, hostile_wasm)
    assert second.cache is not None
    assert (second.compiled, second.deserialized, second.cache.stats.refused) == (1, 0, 1)
    third = ComponentEngine(ArtifactCache(folder, 1 << 30, ComponentEngine.fingerprint()))
    ok(third, hostile_wasm)
    assert (third.compiled, third.deserialized) == (0, 1)  # the recompiled artifact replaced the tampered one


def kernel_components(tmp_path: Path, **env: str) -> ComponentEngine:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    environ = {"ARCANA_HOME": str(tmp_path), "ARCANA_PLUGINS__DIR": str(plugins), **env}
    engine = kernel_engine(load_config(None, environ=environ)).components
    assert isinstance(engine, ComponentEngine)
    return engine


def test_the_kernel_caches_under_its_data_folder_by_default(tmp_path: Path) -> None:
    engine = kernel_components(tmp_path)
    assert engine.cache is not None and engine.cache.folder == tmp_path / ".data" / "artifacts"
    assert engine.cache.max_bytes == 1024 * 1024 * 1024


def test_the_kernel_keeps_no_cache_when_told_to(tmp_path: Path) -> None:
    assert kernel_components(tmp_path, ARCANA_EXECUTOR__ARTIFACT_CACHE_DIR="").cache is None


def test_the_kernel_compiles_uncached_rather_than_trust_a_folder_in_the_plugins_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = kernel_components(tmp_path, ARCANA_EXECUTOR__ARTIFACT_CACHE_DIR=str(tmp_path / "plugins" / ".artifacts"))
    assert engine.cache is None
    assert "compiled-artifact cache not used" in caplog.text and "inside the plugins folder" in caplog.text
