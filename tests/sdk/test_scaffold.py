"""`arcana plugin new`: the files it lays out, the names it refuses, the AssemblyScript SDK tarball.

The fast tests write folders and read them back; the toolchain test compiles a Zig project that
depends on sdk/zig as a package. tests/e2e/test_scaffold.py builds, tests and serves new plugins.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import pytest

from arcana import cli, manifest
from arcana.exit_codes import ExitCode
from arcana.manifest import parse_manifest
from arcana_sdk import scaffold
from arcana_sdk.npm_pack import pack_guest_sdk, sdk_tarball_bytes, sdk_tarball_name, sdk_version
from arcana_sdk.scaffold import LANGUAGES, ScaffoldError, new_plugin, plan
from arcana_sdk.sources import guest_sdk_dir

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ROOT / "sdk" / "tooling"
SOURCE_FILE = {"assemblyscript": "assembly/index.ts", "zig": "src/main.zig", "c": "src/main.c", "python": "app.py"}
# Names at the edges of the manifest's rule: every one must give a valid manifest and route.
EDGE_NAMES = ("a", "my-plugin", "my_plugin", "x9-_-y", "z" * 63)


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- the folder


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_new_plugin_folder_holds_manifest_source_test_readme_and_gitignore(tmp_path: Path, language: str) -> None:
    folder = new_plugin("greeter", language, tmp_path)

    assert folder == tmp_path / "greeter"
    expected = {"plugin.toml", SOURCE_FILE[language], "tests/test_greeter.py", "README.md", ".gitignore", "pytest.ini"}
    if language == "assemblyscript":
        expected |= {"package.json", f"vendor/{sdk_tarball_name()}"}
    assert _files(folder) == expected
    texts = [(folder / f).read_text() for f in expected if not f.endswith(".tgz")]
    assert not [t for t in texts if "{{" in t], "a placeholder was left unfilled"


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", EDGE_NAMES)
def test_the_generated_manifest_is_valid_and_routes_get_hello_under_the_plugins_name(language: str, name: str) -> None:
    text = {f.path: f.text for f in plan(name, language)}["plugin.toml"]

    parsed = parse_manifest(text)

    assert (parsed.name, parsed.version) == (name, "0.1.0")
    assert [(r.method, r.path.raw, r.handler, r.public) for r in parsed.routes] == [
        ("GET", f"/api/v1/{name}/hello/{{who}}", "hello", True)
    ]
    assert parsed.capabilities == {"log": True}


def test_the_test_file_is_named_as_a_python_module_and_compiles(tmp_path: Path) -> None:
    folder = new_plugin("my-plugin", "zig", tmp_path)

    source = (folder / "tests" / "test_my_plugin.py").read_text()

    compile(source, "test_my_plugin.py", "exec")
    assert '"/api/v1/my-plugin/hello/Ada"' in source
    assert "def test_" in source and "arcana_plugin" in source


def test_the_python_app_registers_the_manifests_handler_and_compiles(tmp_path: Path) -> None:
    folder = new_plugin("my-plugin", "python", tmp_path)
    source = (folder / "app.py").read_text()

    compile(source, "app.py", "exec")
    assert '@app.route("GET", "/api/v1/my-plugin/hello/{who}", name="hello")' in source
    assert "componentize-py" in (folder / "README.md").read_text()


def test_the_readme_says_how_to_build_test_and_deploy(tmp_path: Path) -> None:
    readme = (new_plugin("greeter", "c", tmp_path) / "README.md").read_text()

    for step in ("arcana plugin build .", "python -m pytest", "plugins folder", "greeter.wasm", "src/main.c"):
        assert step in readme


def test_the_assemblyscript_package_installs_the_vendored_sdk_with_the_examples_pins(tmp_path: Path) -> None:
    folder = new_plugin("greeter", "assemblyscript", tmp_path)
    package = json.loads((folder / "package.json").read_text())
    example = json.loads((ROOT / "plugins" / "hello" / "package.json").read_text())

    assert package["dependencies"]["@arcana/sdk"] == f"file:vendor/arcana-sdk-{sdk_version()}.tgz"
    assert package["dependencies"]["@extism/as-pdk"] == example["dependencies"]["@extism/as-pdk"]
    assert package["devDependencies"] == example["devDependencies"]
    assert (folder / "vendor" / f"arcana-sdk-{sdk_version()}.tgz").read_bytes() == sdk_tarball_bytes()


def test_an_empty_existing_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "greeter").mkdir()

    assert (new_plugin("greeter", "zig", tmp_path) / "src" / "main.zig").is_file()


def test_a_folder_with_files_is_refused_and_left_as_it_was(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "greeter").mkdir()
    (tmp_path / "greeter" / "notes.txt").write_text("mine")

    code = cli.main(["plugin", "new", "greeter", "--lang", "zig", "--dir", str(tmp_path)])

    assert code == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert "already exists and is not empty" in err and "choose another name or --dir" in err
    assert _files(tmp_path / "greeter") == {"notes.txt"}


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("Greeter", scaffold.NAME_FIX),
        ("1greeter", scaffold.NAME_FIX),
        ("my__plugin", scaffold.NAME_FIX),
        ("my plugin", scaffold.NAME_FIX),
        ("../escape", scaffold.NAME_FIX),
        ("z" * 64, scaffold.NAME_FIX),
        ("", scaffold.NAME_FIX),
        ("admin", "choose another name"),
        ("auth", "choose another name"),
    ],
)
def test_a_bad_name_is_refused_with_exit_2_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, fix: str
) -> None:
    code = cli.main(["plugin", "new", name, "--lang", "c", "--dir", str(tmp_path)])

    assert code == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert err.startswith("arcana: ") and err.count("\n") == 1
    assert fix in err
    assert list(tmp_path.iterdir()) == []


def test_the_name_rule_is_the_manifests() -> None:
    assert scaffold.NAME_RE.pattern == manifest.NAME_RE.pattern
    assert scaffold.NAME_FIX == manifest.NAME_FIX
    for prefix in manifest.RESERVED_PREFIXES:
        if prefix.startswith("/api/v1/"):
            assert prefix.removeprefix("/api/v1/") in scaffold.RESERVED_NAMES


def test_an_unknown_language_is_refused_naming_the_known_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["plugin", "new", "greeter", "--lang", "rust", "--dir", str(tmp_path)])

    assert exited.value.code == ExitCode.CONFIG
    assert "invalid choice: 'rust' (choose from 'assemblyscript', 'zig', 'c', 'python')" in capsys.readouterr().err
    with pytest.raises(ScaffoldError, match=r"unknown language 'rust'; choose one of assemblyscript, zig, c, python"):
        new_plugin("greeter", "rust", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_command_names_the_files_and_the_next_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugin", "new", "greeter", "--lang", "zig", "--dir", str(tmp_path)]) == ExitCode.OK

    out = capsys.readouterr().out
    assert "src/main.zig" in out and "tests/test_greeter.py" in out
    assert f"cd {tmp_path / 'greeter'} && arcana plugin build . && python -m pytest" in out


def test_without_dir_the_plugin_goes_into_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert cli.main(["plugin", "new", "greeter", "--lang", "c"]) == ExitCode.OK

    assert (tmp_path / "greeter" / "src" / "main.c").is_file()


def test_every_template_is_package_data_of_arcana_sdk() -> None:
    """A strict editable install and the wheel ship only what the globs match: a new template must match one."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["arcana_sdk"]
    templates = [p.relative_to(TOOLING).as_posix() for p in (TOOLING / "templates").rglob("*") if p.is_file()]
    shipped = [*templates, "guest/zig/build.zig", "guest/zig/build.zig.zon"]

    assert [f for f in shipped if not any(fnmatch.fnmatchcase(f, g) for g in globs)] == []
    assert len(templates) >= 10


# ---------------------------------------------------------------- the AssemblyScript SDK tarball


def _members(tarball: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_sdk_tarball_holds_the_package_json_and_every_source_under_package(tmp_path: Path) -> None:
    sdk = guest_sdk_dir("assemblyscript")
    sources = {p.relative_to(sdk).as_posix() for p in sdk.rglob("*.ts") if "node_modules" not in p.parts}

    members = _members(sdk_tarball_bytes())

    assert set(members) == {"package/package.json", *(f"package/{s}" for s in sources)}
    assert "package/assembly/index.ts" in members and "package/index.ts" in members
    with tarfile.open(fileobj=io.BytesIO(sdk_tarball_bytes()), mode="r:gz") as tar:
        packed = tar.extractfile("package/package.json")
        assert packed is not None
        assert json.loads(packed.read()) == json.loads((sdk / "package.json").read_text())


def test_the_sdk_tarball_is_the_same_bytes_whatever_the_files_times_and_the_clock(tmp_path: Path) -> None:
    copy = tmp_path / "sdk"
    sdk = guest_sdk_dir("assemblyscript")
    for path in sdk.rglob("*"):
        if path.is_file() and "node_modules" not in path.parts:
            (copy / path.relative_to(sdk)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(sdk)).write_bytes(path.read_bytes())
            os.utime(copy / path.relative_to(sdk), (1_000_000_000, 1_000_000_000))

    first = pack_guest_sdk(tmp_path / "one", copy).read_bytes()
    second = sdk_tarball_bytes()

    assert first == second
    assert gzip.decompress(first)  # a whole gzip stream
    assert first[4:8] == b"\x00\x00\x00\x00", "the gzip header carries no time"
    for member in _members(first).values():
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (499162500, 0, 0, "", "")
        assert member.mode == 0o644 and member.isfile()


def test_node_modules_in_the_sdk_folder_never_reach_the_tarball(tmp_path: Path) -> None:
    (tmp_path / "assembly").mkdir()
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "package.json").write_text('{"name": "@arcana/sdk", "version": "9.9.9"}')
    (tmp_path / "assembly" / "index.ts").write_text("export const a = 1;")
    (tmp_path / "node_modules" / "x" / "index.ts").write_text("export const b = 2;")

    assert set(_members(sdk_tarball_bytes(tmp_path))) == {"package/package.json", "package/assembly/index.ts"}
    assert sdk_tarball_name(tmp_path) == "arcana-sdk-9.9.9.tgz"


def test_plugin_sdk_pack_writes_the_tarball_into_the_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugin", "sdk", "assemblyscript", "--pack", str(tmp_path / "out")]) == ExitCode.OK

    written = tmp_path / "out" / sdk_tarball_name()
    assert capsys.readouterr().out == f"{written}\n"
    assert written.read_bytes() == sdk_tarball_bytes()


def test_plugin_sdk_pack_of_zig_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugin", "sdk", "zig", "--pack", str(tmp_path)]) == ExitCode.CONFIG

    assert "only the AssemblyScript SDK is packed for npm" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the Zig SDK as a package

CONSUMER_BUILD = """\
const std = @import("std");

pub fn build(b: *std.Build) void {
    const arcana = b.dependency("arcana", .{}).module("arcana");
    const exe = b.addExecutable(.{
        .name = "consumer",
        .root_module = b.createModule(.{
            .root_source_file = b.path("src/main.zig"),
            .target = b.resolveTargetQuery(.{ .cpu_arch = .wasm32, .os_tag = .freestanding }),
            .optimize = .ReleaseSmall,
            .imports = &.{.{ .name = "arcana", .module = arcana }},
        }),
    });
    exe.entry = .disabled;
    exe.rdynamic = true;
    b.installArtifact(exe);
}
"""
# The fingerprint is Zig's for the package name "consumer" (zig build suggests it).
CONSUMER_ZON = """\
.{
    .name = .consumer,
    .version = "0.0.0",
    .fingerprint = 0x705b372717133adf,
    .dependencies = .{ .arcana = .{ .path = "%s" } },
    .paths = .{""},
}
"""
CONSUMER_MAIN = """\
const arcana = @import("arcana");

export fn ping() i32 {
    return arcana.respond(200, .{ .pong = true });
}
"""


@pytest.mark.toolchain
def test_a_zig_project_with_its_own_build_zig_compiles_against_the_sdk_package(tmp_path: Path) -> None:
    project = tmp_path / "consumer"
    (project / "src").mkdir(parents=True)
    sdk = os.path.relpath(guest_sdk_dir("zig"), project)  # build.zig.zon takes a path relative to the project
    (project / "build.zig").write_text(CONSUMER_BUILD)
    (project / "build.zig.zon").write_text(CONSUMER_ZON % sdk)
    (project / "src" / "main.zig").write_text(CONSUMER_MAIN)

    result = subprocess.run(
        [sys.executable, "-m", "ziglang", "build", "--cache-dir", str(tmp_path / "cache")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    wasm = (project / "zig-out" / "bin" / "consumer.wasm").read_bytes()
    assert wasm.startswith(b"\x00asm") and b"ping" in wasm
