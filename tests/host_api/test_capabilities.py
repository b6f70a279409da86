"""The capability composition: one catalogue read off the capabilities, grants, imports, and the factor phases."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcana.manifest import Manifest
from arcana.types import CallContext, CapabilityRefused, HostFunction, JsonObject, PluginSpec
from arcana_host.binding import link_capability
from arcana_host.catalog import CAPABILITY_CLASSES, CATALOG, HOST_NAMESPACE, KNOWN_GRANTS
from arcana_host.registry import Capabilities, ConfiguredPlugin

HOST_API = Path(__file__).resolve().parents[2] / "host_api"


def test_the_catalogue_is_exactly_the_functions_the_capabilities_declare() -> None:
    declared = {fn.name: fn.grant for cls in CAPABILITY_CLASSES for fn in cls.functions}
    assert dict(CATALOG) == declared
    assert len(declared) == sum(len(cls.functions) for cls in CAPABILITY_CLASSES)  # no name declared twice


def test_each_capability_lives_in_a_folder_named_for_its_grant() -> None:
    for cls in CAPABILITY_CLASSES:
        assert (HOST_API / cls.name / "capability.py").is_file(), cls.name
        assert cls.__module__ == f"arcana_host.{cls.name}.capability"
    assert {cls.name for cls in CAPABILITY_CLASSES} <= KNOWN_GRANTS


@dataclass
class Probe:
    """A capability that records its phases: configure once per plugin, prepare once per plugin call."""

    name: str = "probe"
    configured: list[str] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)
    refuse: bool = False

    def configure(self, plugin: PluginSpec) -> str:
        if self.refuse:
            from arcana.errors import Problem

            raise CapabilityRefused([Problem("capabilities.probe", "no probes today", "ask tomorrow")])
        self.configured.append(plugin.name)
        return f"state-of-{plugin.name}"

    def prepare(self, state: str, call: CallContext) -> tuple[str, str]:
        self.prepared.append(call.request_id)
        return state, call.request_id

    def close(self) -> None:
        return None

    def echo(self, call: tuple[str, str], request: JsonObject) -> JsonObject:
        return {"state": call[0], "request_id": call[1], "got": request}

    def boom(self, call: tuple[str, str], request: JsonObject) -> JsonObject:
        raise RuntimeError("secret detail")

    functions = (HostFunction("probe_echo", "probe", echo), HostFunction("probe_boom", "probe", boom))


def _spec(name: str = "p") -> PluginSpec:
    return PluginSpec(Manifest(name, "1.0.0", capabilities={"probe": True}), frozenset({"probe"}))


def test_per_plugin_state_is_built_once_and_per_call_state_once_per_call() -> None:
    probe = Probe()
    linked = link_capability(probe, _spec("alpha"))
    first, second = CallContext("alpha", "1.0.0", "r1"), CallContext("alpha", "1.0.0", "r2")
    replies = [json.loads(linked["probe_echo"].call(ctx, b'{"n": 1}')) for ctx in (first, first, second)]
    assert probe.configured == ["alpha"]
    assert probe.prepared == ["r1", "r2"]
    assert replies[0] == {"state": "state-of-alpha", "request_id": "r1", "got": {"n": 1}}
    assert replies[2]["request_id"] == "r2"


def test_a_linked_function_answers_errors_as_values_and_never_raises() -> None:
    linked = link_capability(Probe(), _spec())
    ctx = CallContext("p", "1.0.0")
    assert json.loads(linked["probe_echo"].call(ctx, b"[1]"))["error"]["code"] == "VALIDATION_FAILED"
    assert json.loads(linked["probe_echo"].call(ctx, b"{not json"))["error"]["code"] == "VALIDATION_FAILED"
    assert json.loads(linked["probe_echo"].call(ctx, b"[" * 100_000))["error"]["code"] == "VALIDATION_FAILED"
    failed: Any = json.loads(linked["probe_boom"].call(ctx, b"{}"))
    assert failed["error"]["code"] == "INTERNAL" and "secret" not in failed["error"]["message"]


def _manifest(**capabilities: bool) -> Manifest:
    return Manifest("notes", "1.0.0", capabilities=dict(capabilities))


def test_configure_links_only_the_functions_the_plugin_was_granted() -> None:
    capabilities = Capabilities.from_config(_default_config())
    imports = [(HOST_NAMESPACE, "log"), (HOST_NAMESPACE, "store_get")]
    configured = capabilities.configure(_manifest(log=True, store=True), frozenset({"log", "store"}), imports)
    assert isinstance(configured, ConfiguredPlugin)
    assert {fn.name for fn in configured.functions} == {n for n, grant in CATALOG.items() if grant in {"log", "store"}}
    capabilities.close()


def test_configure_refuses_imports_that_are_not_granted_or_not_requested_or_unknown() -> None:
    capabilities = Capabilities.from_config(_default_config())
    imports = [(HOST_NAMESPACE, "store_get"), (HOST_NAMESPACE, "kv_get"), (HOST_NAMESPACE, "nope"), ("wasi", "fd")]
    refused = capabilities.configure(_manifest(log=True), frozenset({"log"}), imports)
    assert isinstance(refused, list)
    text = "\n".join(map(str, refused))
    assert "store_get: needs capability 'store', which the operator has not granted" in text
    assert "nope: is not a host function of Arcana" in text
    assert "namespace 'wasi' is not offered to plugins" in text
    requested_only = capabilities.configure(_manifest(log=True), frozenset({"log", "store"}), imports[:1])
    assert isinstance(requested_only, list) and "which the manifest does not request" in str(requested_only[0])
    capabilities.close()


def test_a_capability_that_refuses_a_plugin_refuses_its_load_with_the_reason() -> None:
    probe = Probe(refuse=True)
    capabilities = Capabilities([probe])
    refused = capabilities.configure(
        Manifest("p", "1.0.0", capabilities={"probe": True}), frozenset({"probe"}), [(HOST_NAMESPACE, "probe_echo")]
    )
    assert isinstance(refused, list)
    assert any("no probes today" in str(p) for p in refused)


def test_an_http_import_without_hosts_in_the_manifest_is_refused_with_how_to_list_them() -> None:
    capabilities = Capabilities.from_config(_default_config())
    imports = [(HOST_NAMESPACE, "http_fetch")]
    missing = capabilities.configure(_manifest(log=True), frozenset({"log", "http"}), imports)
    assert isinstance(missing, list) and 'add http = ["api.example.com"] under [capabilities]' in str(missing)
    bad = Manifest("notes", "1.0.0", capabilities={"http": ("*", "api.example.com")})
    refused = capabilities.configure(bad, frozenset({"http"}), imports)
    assert isinstance(refused, list) and "capabilities.http: '*' would allow every host" in str(refused[0])
    good = Manifest("notes", "1.0.0", capabilities={"http": ("api.example.com",)})
    configured = capabilities.configure(good, frozenset({"http"}), imports)
    assert isinstance(configured, ConfiguredPlugin) and [f.name for f in configured.functions] == ["http_fetch"]
    capabilities.close()


def _default_config() -> Any:
    from arcana.config import ArcanaConfig

    return ArcanaConfig()
