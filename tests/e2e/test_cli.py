"""Start-up failures of a real `arcana` process: one line on stderr naming cause and fix, a documented exit code.

Each failure is checked before the kernel is built, so none of these starts
a server; they take about a second each.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from arcana.exit_codes import ExitCode
from e2e.server import free_port

pytestmark = pytest.mark.e2e


def arcana(
    *args: str, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
    return subprocess.run(
        [sys.executable, "-m", "arcana.cli", *args],
        cwd=cwd,
        input=stdin,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line, after checking there is exactly one and no traceback."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("arcana: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A deployment folder: a config with its own SQLite file and an empty plugins folder."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "arcana.yaml").write_text(yaml.safe_dump({"database": {"url": f"sqlite:///{tmp_path / 'a.db'}"}}))
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other process is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def test_busy_http_port_is_one_line_and_exit_3(folder: Path, busy_port: int) -> None:
    result = arcana("serve", "--http-port", str(busy_port), "--grpc-port", str(free_port()), cwd=folder)
    line = one_line(result)
    assert result.returncode == ExitCode.UNAVAILABLE == 3
    assert f"HTTP on 127.0.0.1:{busy_port}" in line and "already in use" in line and "--http-port" in line


def test_busy_grpc_port_is_one_line_and_exit_3(folder: Path, busy_port: int) -> None:
    result = arcana("serve", "--http-port", str(free_port()), "--grpc-port", str(busy_port), cwd=folder)
    line = one_line(result)
    assert result.returncode == ExitCode.UNAVAILABLE
    assert f"gRPC on 127.0.0.1:{busy_port}" in line and "already in use" in line and "--grpc-port" in line
    assert not (folder / "a.db").exists(), "the database was opened before the ports were checked"


def test_missing_plugins_folder_is_one_line_and_exit_2(folder: Path) -> None:
    result = arcana("serve", "--plugins", str(folder / "nope"), "--http-port", str(free_port()), cwd=folder)
    line = one_line(result)
    assert result.returncode == ExitCode.CONFIG
    assert f"the plugins folder {folder / 'nope'} does not exist" in line and "arcana init" in line


@pytest.mark.parametrize(
    "text, expected",
    [
        ("server:\n  htp_port: 1\n", "unknown config key 'server.htp_port' (in {file})"),
        ("server: [1\n", "{file}: not valid YAML"),
        ("database:\n  url: mysql://x\n", "'database.url' must be a sqlite:/// or postgresql+psycopg:// URL"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(folder: Path, text: str, expected: str) -> None:
    (folder / "arcana.yaml").write_text(text)
    result = arcana("serve", "--http-port", str(free_port()), cwd=folder)
    line = one_line(result)
    assert result.returncode == ExitCode.CONFIG
    assert expected.format(file=folder / "arcana.yaml") in line


def test_unreachable_database_is_one_line_and_exit_4(folder: Path) -> None:
    down = {"ARCANA_DATABASE__URL": "postgresql+psycopg://arcana@127.0.0.1:1/arcana"}
    ports = ("--http-port", str(free_port()), "--grpc-port", str(free_port()))
    for argv in (("serve", *ports), ("migrate",)):
        result = arcana(*argv, cwd=folder, env=down)
        line = one_line(result)
        assert result.returncode == ExitCode.DATABASE, argv
        assert "cannot reach the database postgresql+psycopg://arcana@127.0.0.1:1/arcana" in line
        assert "check database.url" in line


def test_unreadable_tls_certificate_is_one_line_and_exit_2(folder: Path) -> None:
    tls = {"server": {"http_tls": {"cert_file": str(folder / "no.pem"), "key_file": str(folder / "no.key")}}}
    (folder / "arcana.yaml").write_text(yaml.safe_dump({**tls, "database": {"url": f"sqlite:///{folder / 'a.db'}"}}))
    result = arcana("serve", "--http-port", str(free_port()), cwd=folder)
    line = one_line(result)
    assert result.returncode == ExitCode.CONFIG
    assert f"server.http_tls.cert_file: cannot read {folder / 'no.pem'}" in line


def test_user_create_says_nothing_about_jwt_secrets(folder: Path) -> None:
    """It signs no token, so the dev-mode warning about a missing ARCANA_JWT_SECRET does not belong here."""
    result = arcana(
        "user", "create", "--email", "root@example.com", "--role", "admin", cwd=folder, stdin="s3cret-pass\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("created user root@example.com (")


def test_a_production_config_without_a_secret_fails_before_any_port(folder: Path, busy_port: int) -> None:
    (folder / "arcana.yaml").write_text(
        yaml.safe_dump({"auth": {"dev": False}, "database": {"url": f"sqlite:///{folder / 'a.db'}"}})
    )
    result = arcana("serve", "--http-port", str(busy_port), cwd=folder, env={"ARCANA_JWT_SECRET": "tiny-s3cret"})
    line = one_line(result)
    assert result.returncode == ExitCode.CONFIG and "ARCANA_JWT_SECRET" in line and "tiny-s3cret" not in line
