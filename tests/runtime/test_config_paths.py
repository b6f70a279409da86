"""Relative paths: a config file's start from its folder; the defaults' and the environment's from the base directory.

The base directory is $ARCANA_HOME when set, else the working directory;
never the package's location (site-packages once installed).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pytest

from arcana.config import ArcanaConfig, ConfigPath, base_dir, load_config
from arcana.database import resolve_url


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_relative_plugins_dir_in_a_config_file_resolves_against_the_files_folder(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path / "etc" / "c.yaml", "plugins:\n  dir: ../plugins\n"), environ={})
    assert config.plugins.dir == str(tmp_path / "plugins")
    assert config.plugins_dir() == tmp_path / "plugins"


def test_a_relative_config_file_path_still_resolves_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "etc" / "c.yaml", "plugins:\n  dir: mine\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(Path("etc/c.yaml"), environ={}).plugins_dir() == tmp_path / "etc" / "mine"


def test_default_plugins_dir_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.plugins.dir == str(tmp_path / "plugins") and config.plugins_dir() == tmp_path / "plugins"


def test_default_plugins_dir_resolves_against_arcana_home_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={"ARCANA_HOME": "/srv/arcana"}).plugins_dir() == Path("/srv/arcana/plugins")
    # A relative $ARCANA_HOME is itself relative to the working directory.
    assert load_config(None, environ={"ARCANA_HOME": "home"}).plugins_dir() == tmp_path / "home" / "plugins"


def test_a_path_from_the_environment_resolves_against_the_base_directory_not_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "etc" / "c.yaml", "plugins:\n  watch: false\n")
    environ = {"ARCANA_HOME": str(tmp_path / "home"), "ARCANA_PLUGINS__DIR": "env-plugins"}
    config = load_config(path, environ=environ)
    assert config.plugins_dir() == tmp_path / "home" / "env-plugins" and config.plugins.watch is False


def test_a_file_sections_default_path_resolves_against_the_base_directory(tmp_path: Path) -> None:
    # The file sets plugins.watch but not plugins.dir: the dir is still the default's, from $ARCANA_HOME.
    path = _write(tmp_path / "etc" / "c.yaml", "plugins:\n  watch: false\n")
    config = load_config(path, environ={"ARCANA_HOME": str(tmp_path / "home")})
    assert config.plugins_dir() == tmp_path / "home" / "plugins"


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.yaml", "plugins:\n  dir: /opt/plugins\ndatabase:\n  url: sqlite:////var/a.db\n")
    config = load_config(path, environ={})
    assert config.plugins.dir == "/opt/plugins" and config.database.url == "sqlite:////var/a.db"


def test_command_line_plugins_dir_replaces_the_loaded_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `arcana serve --plugins DIR` does (runtime/cli.py).
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    plugins = dataclasses.replace(config.plugins, dir=str(Path("cli-plugins").resolve()))
    assert dataclasses.replace(config, plugins=plugins).plugins_dir() == tmp_path.resolve() / "cli-plugins"


def test_a_hand_built_config_resolves_against_the_base_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCANA_HOME", raising=False)
    assert ArcanaConfig().plugins_dir() == tmp_path / "plugins" and base_dir() == tmp_path


def test_relative_sqlite_url_in_a_config_file_resolves_against_the_files_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "etc" / "c.yaml", "database:\n  url: sqlite:///data/a.db\n")
    url = load_config(path, environ={}).database.url
    assert url == f"sqlite:///{tmp_path}/etc/data/a.db"
    assert resolve_url(url).database == str(tmp_path / "etc" / "data" / "a.db")


def test_default_sqlite_url_resolves_against_arcana_home_or_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, environ={}).database.url == f"sqlite:///{tmp_path}/.data/arcana.db"
    home = {"ARCANA_HOME": str(tmp_path / "home")}
    assert load_config(None, environ=home).database.url == f"sqlite:///{tmp_path}/home/.data/arcana.db"


def test_sqlite_url_from_the_environment_resolves_against_the_base_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = load_config(None, environ={"ARCANA_DATABASE__URL": "sqlite:///x.db?timeout=3"}).database.url
    assert url == f"sqlite:///{tmp_path}/x.db?timeout=3"


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///file:a.db?mode=ro&uri=true", "postgresql+psycopg://u:p%40ss@h/db"],
)
def test_urls_without_a_relative_sqlite_file_are_kept_as_written(tmp_path: Path, url: str) -> None:
    path = _write(tmp_path / "c.yaml", f"database:\n  url: '{url}'\n")
    assert load_config(path, environ={}).database.url == url


def test_tls_and_jwt_key_files_in_a_config_file_resolve_against_its_folder(tmp_path: Path) -> None:
    text = (
        "server:\n  grpc_tls: {cert_file: tls/s.pem, key_file: tls/s.key, client_ca_file: /ca.pem}\n"
        "auth:\n  algorithm: EdDSA\n  active_kid: k1\n"
        "  keys: [{kid: k1, private_key_file: keys/k1.pem, public_key_file: keys/k1.pub}]\n"
    )
    config = load_config(_write(tmp_path / "c.yaml", text), environ={})
    tls, key = config.server.grpc_tls, config.auth.keys[0]
    assert (tls.cert_file, tls.key_file, tls.client_ca_file) == (
        str(tmp_path / "tls" / "s.pem"),
        str(tmp_path / "tls" / "s.key"),
        "/ca.pem",
    )
    assert (key.private_key_file, key.public_key_file) == (str(tmp_path / "keys/k1.pem"), str(tmp_path / "keys/k1.pub"))
    assert config.server.http_tls.cert_file == "" and not config.server.http_tls.enabled  # unset stays unset


@dataclass(frozen=True)
class WithPaths:
    ca_file: ConfigPath = ""
    spool: ConfigPath = "spool"
    extra: ConfigPath | None = None


def test_capability_sections_resolve_their_config_paths_like_the_kernels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "etc" / "c.yaml", "capabilities:\n  q: {ca_file: ca.pem, extra: x}\n")
    section = load_config(path, environ={"ARCANA_CAPABILITIES__Q__SPOOL": "s"}).section("q", WithPaths)
    assert section == WithPaths(
        ca_file=str(tmp_path / "etc" / "ca.pem"), spool=str(tmp_path / "s"), extra=str(tmp_path / "etc" / "x")
    )
    assert ArcanaConfig().section("q", WithPaths).spool == str(tmp_path / "spool")
