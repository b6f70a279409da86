"""The host ABI version: `[plugin] host_abi` in the manifest, and the loader's refusal of a newer one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from arcana.config import load_config
from arcana.errors import ManifestInvalid, PluginLoadError
from arcana.loader import PluginLoader
from arcana.manifest import parse_manifest
from arcana.types import HOST_ABI_VERSION
from arcana_host.registry import Capabilities
from fakes import FakeEngine, FakePlugin, manifest_toml, reply, route, write_plugin

BASE = '[plugin]\nname = "a"\nversion = "1.0.0"\n'


def test_host_abi_defaults_to_1() -> None:
    assert parse_manifest(BASE).host_abi == 1


@pytest.mark.parametrize("value", [1, 2, 1000])
def test_host_abi_takes_any_integer_from_1(value: int) -> None:
    assert parse_manifest(f"{BASE}host_abi = {value}\n").host_abi == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "must be at least 1, got 0"),
        ("-3", "must be at least 1, got -3"),
        ('"1"', "must be int, got '1'"),
        ("1.0", "must be int, got 1.0"),
        ("true", "must be int, got True"),
    ],
)
def test_host_abi_refuses_anything_else(value: str, message: str) -> None:
    with pytest.raises(ManifestInvalid) as refused:
        parse_manifest(f"{BASE}host_abi = {value}\n")
    assert [(p.field, p.message) for p in refused.value.problems] == [("plugin.host_abi", message)]


def _loader(folder: Path, engine: FakeEngine, pool: ThreadPoolExecutor) -> PluginLoader:
    config = load_config(None, environ={"ARCANA_PLUGINS__DIR": str(folder)})
    return PluginLoader(config, engine, Capabilities.from_config(config), pool)


def _manifest(host_abi: int | None) -> str:
    text = manifest_toml("abi", routes=[route("GET", "/api/v1/abi", "go", public=True)])
    return text if host_abi is None else text.replace("[plugin]\n", f"[plugin]\nhost_abi = {host_abi}\n", 1)


@pytest.mark.parametrize("host_abi", [None, 1, HOST_ABI_VERSION])
def test_the_loader_takes_a_plugin_built_for_this_abi_or_an_older_one(tmp_path: Path, host_abi: int | None) -> None:
    engine = FakeEngine({"abi": FakePlugin({"go": reply({"status": 200})})})
    path = write_plugin(tmp_path, _manifest(host_abi))
    with ThreadPoolExecutor(1) as pool:
        checked = _loader(tmp_path, engine, pool).check(path)
    assert checked.manifest.host_abi == (host_abi or 1)


def test_the_loader_refuses_a_plugin_built_for_a_newer_abi_naming_both(tmp_path: Path) -> None:
    # The module also imports a function no kernel offers: only the ABI is reported, the rest would be noise.
    engine = FakeEngine({"abi": FakePlugin({"go": reply({})}, imports=("from_the_future",))})
    path = write_plugin(tmp_path, _manifest(HOST_ABI_VERSION + 1))
    with ThreadPoolExecutor(1) as pool, pytest.raises(PluginLoadError) as refused:
        _loader(tmp_path, engine, pool).check(path)
    newer, now = HOST_ABI_VERSION + 1, HOST_ABI_VERSION
    assert [(p.field, p.message, p.fix) for p in refused.value.problems] == [
        (
            "plugin.host_abi",
            f"built for host ABI {newer}; this kernel speaks {now}",
            f"upgrade Arcana, or rebuild the plugin with an SDK for ABI {now}",
        )
    ]
    assert refused.value.plugin == "abi"
