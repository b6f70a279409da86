"""Config: defaults equal config/default.yaml; files and env override; bad keys stop start-up by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from arcana.config import REPO_ROOT, defaults_as_dict, load_config
from arcana.errors import ConfigError


def test_default_yaml_states_exactly_the_typed_defaults() -> None:
    shipped = yaml.safe_load((REPO_ROOT / "config" / "default.yaml").read_text())
    assert shipped == defaults_as_dict()
    assert load_config(REPO_ROOT / "config" / "default.yaml", environ={}) == load_config(None, environ={})


def test_file_and_environment_override_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  http_port: 9000\n  host: 0.0.0.0\ngrants:\n  notes: [store]\n")
    config = load_config(path, environ={"ARCANA_SERVER__HTTP_PORT": "9001", "ARCANA_EXECUTOR__THREADS": "4"})
    assert config.server.http_port == 9001 and config.server.host == "0.0.0.0"
    assert config.executor.threads == 4
    assert config.granted("notes") == {"store"} and config.granted("other") == set()


def test_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  http_prot: 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'server.http_prot' \(in .*c.yaml\)"):
        load_config(path, environ={})


def test_unknown_section_from_environment_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'sever'"):
        load_config(None, environ={"ARCANA_SEVER__PORT": "1"})


@pytest.mark.parametrize(
    "text, message",
    [
        ("server:\n  http_port: eighty\n", "'server.http_port' must be int, got 'eighty'"),
        ("server:\n  http_port: 70000\n", "'server.http_port' must be a port"),
        ("executor:\n  threads: true\n", "'executor.threads' must be int"),
        ("logging:\n  level: loud\n", "'logging.level' must be debug"),
        ("grants:\n  notes: store\n", "'grants.notes' must be a list"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("server: [1\n", "not valid YAML"),
    ],
)
def test_bad_values_stop_start_up_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(path, environ={})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", environ={})
