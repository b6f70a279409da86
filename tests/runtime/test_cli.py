"""The command line, in process: --version, help texts, exit codes, `init`, config precedence, missing extras.

Start-up failures of a real `arcana serve` (busy ports, database down) are in
tests/e2e/test_cli.py; the installed wheel in tests/e2e/test_wheel.py.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from arcana import cli
from arcana.config import load_config
from arcana.database import resolve_url
from arcana.exit_codes import EXIT_CODES_HELP, ExitCode, StartupFailure
from arcana.init_cmd import HEADER
from arcana.listeners import _bind_failure
from arcana.preflight import check_plugins_dir

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ("audit-log.wasm", "echo.wasm", "hello.wasm", "notes.wasm")


def _subparsers(parser: argparse.ArgumentParser, path: str = "arcana") -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            summaries = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert summaries.get(name), f"`{path} {name}` has no summary in `{path} --help`"
                found += [(f"{path} {name}", sub), *_subparsers(sub, f"{path} {name}")]
    return found


def test_version_is_the_installed_distribution_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"arcana {version('arcana')}\n"


def test_every_subcommand_has_a_summary_and_a_description() -> None:
    commands = _subparsers(cli._parser())
    names = {name for name, _ in commands}
    assert {"arcana serve", "arcana init", "arcana migrate", "arcana user create", "arcana plugin build"} <= names
    for name, parser in commands:
        assert parser.description and len(parser.description) > 10, f"`{name} --help` has no description"


def test_help_and_readme_document_the_same_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert EXIT_CODES_HELP in help_text
    for code in ExitCode:
        assert f"\n  {int(code)}  " in EXIT_CODES_HELP, f"exit code {code.name} is not documented"
    assert EXIT_CODES_HELP in (ROOT / "README.md").read_text(), "README's exit code block differs from --help"


def test_init_lays_out_a_deployment_and_never_overwrites_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "deploy"
    assert cli.main(["init", str(target)]) == 0
    config_text = (target / "arcana.yaml").read_text()
    assert config_text.startswith(HEADER) and "# larger request bodies" in config_text  # comments kept
    assert yaml.safe_load(config_text) == yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    # The laid-out config states the defaults, its relative paths anchored in the deployment folder.
    assert load_config(target / "arcana.yaml", environ={}) == load_config(None, environ={"ARCANA_HOME": str(target)})
    assert sorted(p.name for p in (target / "plugins").iterdir()) == list(EXAMPLES)
    for name in EXAMPLES:
        shipped = ROOT / "plugins" / name.removesuffix(".wasm") / name
        assert (target / "plugins" / name).read_bytes() == shipped.read_bytes()
    assert (target / ".data").is_dir()
    capsys.readouterr()

    (target / "arcana.yaml").write_text("server: {http_port: 8081}\n")
    assert cli.main(["init", str(target)]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "would overwrite" in err and "arcana.yaml" in err and "--force" in err
    assert (target / "arcana.yaml").read_text() == "server: {http_port: 8081}\n"

    assert cli.main(["init", str(target), "--force"]) == 0
    assert (target / "arcana.yaml").read_text() == config_text


def test_config_precedence_is_flag_then_local_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli._config_file(None) is None
    (tmp_path / "arcana.yaml").write_text("server: {http_port: 8181}\n")
    assert cli._config_file(None) == tmp_path / "arcana.yaml"
    other = tmp_path / "other.yaml"
    other.write_text("server: {http_port: 8282}\n")
    assert cli._config_file(other) == other
    monkeypatch.delenv("ARCANA_SERVER__HTTP_PORT", raising=False)
    assert cli._load(None).server.http_port == 8181
    assert cli._load(other).server.http_port == 8282


def test_relative_paths_in_a_local_config_resolve_against_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "arcana.yaml").write_text("plugins: {dir: mine}\ndatabase: {url: 'sqlite:///state/a.db'}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARCANA_DATABASE__URL", raising=False)
    monkeypatch.delenv("ARCANA_PLUGINS__DIR", raising=False)
    config = cli._load(None)
    assert config.plugins_dir() == tmp_path / "mine"
    assert resolve_url(config.database.url).database == str(tmp_path / "state" / "a.db")


def test_a_yaml_error_is_reported_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [1\n")
    assert cli.main(["migrate", "--config", str(bad)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("arcana: configuration error:") and "bad.yaml" in err


def test_postgres_without_the_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails, as in a plain install
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCANA_DATABASE__URL", "postgresql+psycopg://arcana@127.0.0.1:1/arcana")
    # (`serve` makes the same check; it is run as a real process in tests/e2e/test_cli.py.)
    for argv in (["migrate"], ["user", "create", "--email", "a@example.com"]):
        assert cli.main(argv) == ExitCode.MISSING_EXTRA
        assert capsys.readouterr().err == (
            "arcana: PostgreSQL support is not installed; pip install 'arcana[postgres]'\n"
        )


def test_plugin_build_without_the_toolchain_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "grpc_tools", None)
    src = tmp_path / "p"
    (src / "src").mkdir(parents=True)
    (src / "proto").mkdir()
    (src / "plugin.toml").write_text('[plugin]\nname = "p"\nversion = "1.0.0"\n')
    (src / "src" / "main.c").write_text("int x(void) { return 0; }\n")
    (src / "proto" / "p.proto").write_text('syntax = "proto3";\npackage p;\n')
    assert cli.main(["plugin", "build", str(src)]) == ExitCode.MISSING_EXTRA
    assert capsys.readouterr().err == (
        "arcana: protoc (grpcio-tools) is not installed; pip install 'arcana[toolchain]'\n"
    )
    assert not (src / "p.wasm").exists()


def test_an_unexpected_error_is_one_line_unless_traceback_is_asked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(_: argparse.Namespace) -> int:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cli, "_run", boom)
    assert cli.main(["migrate"]) == ExitCode.FAILED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: kaboom" in err and "--traceback" in err
    with pytest.raises(RuntimeError, match="kaboom"):
        cli.main(["--traceback", "migrate"])


def test_plugins_folder_failures_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StartupFailure) as missing:
        check_plugins_dir(tmp_path / "nope")
    assert missing.value.code == ExitCode.CONFIG and "arcana init" in missing.value.fix
    (tmp_path / "file").write_text("")
    with pytest.raises(StartupFailure) as not_a_folder:
        check_plugins_dir(tmp_path / "file")
    assert not_a_folder.value.code == ExitCode.CONFIG and "is not a folder" in not_a_folder.value.cause
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as root, chmod would not stop us reading
    with pytest.raises(StartupFailure) as unreadable:
        check_plugins_dir(tmp_path)
    assert unreadable.value.code == ExitCode.UNAVAILABLE and "permission denied" in unreadable.value.cause


@pytest.mark.parametrize(
    "error, code, words",
    [
        (errno.EADDRINUSE, ExitCode.UNAVAILABLE, "already in use"),
        (errno.EACCES, ExitCode.UNAVAILABLE, "permission denied"),
        (errno.EADDRNOTAVAIL, ExitCode.CONFIG, "not on this machine"),
    ],
)
def test_bind_errors_map_to_an_exit_code_and_a_fix(error: int, code: ExitCode, words: str) -> None:
    failure = _bind_failure(OSError(error, os.strerror(error)), "HTTP", "127.0.0.1", 80, "--http-port")
    assert failure.code == code and words in failure.cause and "127.0.0.1:80" in failure.cause and failure.fix
