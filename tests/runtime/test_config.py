"""Config: defaults equal config/default.yaml; files and env override; bad keys stop start-up by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from arcana.config import defaults_as_dict, load_config
from arcana.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_YAML = ROOT / "config" / "default.yaml"


def test_default_yaml_states_exactly_the_typed_defaults() -> None:
    shipped = yaml.safe_load(DEFAULT_YAML.read_text())
    assert shipped == defaults_as_dict()
    # The file's relative paths start from its folder; the defaults' from $ARCANA_HOME.
    home = {"ARCANA_HOME": str(DEFAULT_YAML.parent)}
    assert load_config(DEFAULT_YAML, environ={}) == load_config(None, environ=home)


def test_file_and_environment_override_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  http_port: 9000\n  host: 0.0.0.0\ngrants:\n  notes: [store]\n")
    config = load_config(path, environ={"ARCANA_SERVER__HTTP_PORT": "9001", "ARCANA_EXECUTOR__THREADS": "4"})
    assert config.server.http_port == 9001 and config.server.host == "0.0.0.0"
    assert config.executor.threads == 4
    assert config.granted("notes") == {"store"} and config.granted("other") == set()


def test_environment_reaches_nested_keys_with_more_double_underscores() -> None:
    config = load_config(
        None, environ={"ARCANA_SERVER__HTTP_TLS__CERT_FILE": "/c.pem", "ARCANA_SERVER__HTTP_TLS__KEY_FILE": "/k.pem"}
    )
    assert config.server.http_tls.enabled and config.server.http_tls.key_file == "/k.pem"


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  http_prot: 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'server.http_prot' \(in .*c.yaml\)"):
        load_config(path, environ={})


def test_unknown_key_lists_the_known_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("logging:\n  lvl: debug\n")
    with pytest.raises(ConfigError, match=r"'logging.lvl' \(in .*c.yaml\); known keys: format, level$"):
        load_config(path, environ={})


def test_unknown_key_inside_a_list_item_is_named_with_its_index(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("auth:\n  keys:\n    - {kid: a, private_key: x}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'auth.keys\[0\].private_key' .*known keys: kid,"):
        load_config(path, environ={})


def test_unknown_section_from_environment_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'sever' \(in environment variable ARCANA_SEVER__PORT\)"):
        load_config(None, environ={"ARCANA_SEVER__PORT": "1"})


def test_unknown_key_from_environment_names_the_variable_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  host: 0.0.0.0\n")
    with pytest.raises(ConfigError, match=r"'server.prot' \(in environment variable ARCANA_SERVER__PROT\); known keys"):
        load_config(path, environ={"ARCANA_SERVER__PROT": "1"})


def test_top_level_bookkeeping_fields_are_not_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("source: elsewhere\n")
    with pytest.raises(ConfigError, match="unknown config key 'source'"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "text, message",
    [
        ("server:\n  http_port: eighty\n", "'server.http_port' must be int, got 'eighty' (in "),
        ("server:\n  http_port: 70000\n", "'server.http_port' must be a port"),
        ("server:\n  http_port: -1\n", "'server.http_port' must be int >= 0, got -1"),
        ("server: 3\n", "'server' must be a mapping, got 3"),
        ("server:\n  shutdown_grace_s: true\n", "'server.shutdown_grace_s' must be float, got True"),
        ("server:\n  http_tls: {cert_file: a.pem}\n", "'server.http_tls': TLS needs both cert_file and key_file (in "),
        ("server:\n  per_address_limit: lots\n", "'server.per_address_limit' must be N/second|minute|hour|day or 0"),
        ("server:\n  rate_limit_backend: disk\n", "'server.rate_limit_backend' must be one of memory|redis"),
        ("server:\n  rate_limit_max_keys: 0\n", "'server.rate_limit_max_keys' must be at least 1"),
        ("server:\n  metrics_port: 65536\n", "'server.metrics_port' must be a port 0-65535, got 65536"),
        ("executor:\n  threads: true\n", "'executor.threads' must be int, got True"),
        ("executor:\n  threads: 2.5\n", "'executor.threads' must be int, got 2.5"),
        ("plugins:\n  watch: 1\n", "'plugins.watch' must be bool, got 1"),
        ("logging:\n  level: loud\n", "'logging.level' must be one of debug|info|warning|error, got 'loud'"),
        ("auth:\n  algorithm: none\n", "'auth.algorithm' must be one of HS256|RS256|EdDSA, got 'none'"),
        ("auth:\n  keys: [{kid: 7}]\n", "'auth.keys[0].kid' must be str, got 7"),
        ("grants:\n  notes: store\n", "'grants.notes' must be a list, got 'store'"),
        ("grants:\n  notes: [store, 3]\n", "'grants.notes[1]' must be str, got 3"),
        ("grants:\n  1: [store]\n", "'grants' must have keys that are str, got 1"),
        ("capabilities:\n  store: 3\n", "'capabilities.store' must be a mapping, got 3"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("server: [1\n", "not valid YAML"),
        ("executor:\n  idle_instance_ttl_s: -1\n", "'executor.idle_instance_ttl_s' must be float >= 0.0, got -1"),
        ("executor:\n  min_idle_instances: -1\n", "'executor.min_idle_instances' must be int >= 0, got -1"),
    ],
)
def test_bad_values_stop_start_up_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert message in str(error.value)


def test_a_float_field_takes_an_int(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  shutdown_grace_s: 2\n")
    grace = load_config(path, environ={}).server.shutdown_grace_s
    assert grace == 2.0 and isinstance(grace, float)


def test_yaml_yes_is_a_bool_because_yaml_says_so() -> None:
    assert load_config(None, environ={"ARCANA_PLUGINS__WATCH": "no"}).plugins.watch is False


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(
        ConfigError,
        match=r"'server.http_port' must be int, got 'x' \(in environment variable ARCANA_SERVER__HTTP_PORT\)",
    ):
        load_config(None, environ={"ARCANA_SERVER__HTTP_PORT": "x"})


def test_environment_value_that_is_not_yaml_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="ARCANA_GRANTS__NOTES: not a valid YAML value"):
        load_config(None, environ={"ARCANA_GRANTS__NOTES": "[store"})


def test_environment_under_a_file_section_that_is_not_a_mapping_names_both(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server: 3\n")
    with pytest.raises(ConfigError, match=r"ARCANA_SERVER__HOST: config key 'server' is not a mapping \(in .*c.yaml\)"):
        load_config(path, environ={"ARCANA_SERVER__HOST": "h"})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", environ={})
