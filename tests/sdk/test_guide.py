"""docs/guide.md runs as written.

The guide marks each code block that is part of its plugin with an HTML comment
just before the fence (invisible when rendered):

- ``<!-- guide:file PATH -->``: the block is the whole of PATH (created or replaced);
- ``<!-- guide:append PATH -->``: the block is added at the end of PATH;
- ``<!-- guide:insert PATH after LINE -->``: the block goes below the line of PATH that reads LINE;
- ``<!-- guide:same PATH -->``: the block shows PATH as it is at that point (a scaffolded file), unchanged;
- ``<!-- guide:run -->``: a shell session; each ``$ command`` runs (``cd DIR`` moves the session) and
  its standard output must match the lines below it, where ``...`` is any text within a line and a
  line of ``...`` alone any number of lines.

PATHs are relative to the session's folder at that point. The toolchain test walks the guide top to
bottom in an empty temporary folder (outside the checkout, nothing cached), so ``arcana plugin new``,
``arcana plugin build`` (build_plugin), ``arcana plugin call``/``check`` and the guide's own pytest
file (on the ``arcana_plugin`` fixture) all run as an author would run them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide.md"

MARKER_RE = re.compile(r"^<!-- guide:(?P<kind>file|append|insert|same|run)(?P<arg>(?: [^>]*?)?) -->$")
FENCE_RE = re.compile(r"^```(?P<lang>\S*)$")
INSERT_RE = re.compile(r"^(?P<path>\S+) after (?P<line>.+)$")
# Fences the walk never runs: commands aimed at a real server or its folders.
UNRUN_LANGUAGES = frozenset({"sh"})
# A shell session's command whose expected output starts like this answers an error: exit code 1.
ERROR_ANSWER_RE = re.compile(r"^(HTTP/1\.1 [45]\d\d |gRPC (?!OK$))")
COMMAND_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    """One fenced block of the guide and the marker before it (kind "" when none)."""

    line: int  # of the opening fence, 1-based
    lang: str
    kind: str
    arg: str
    text: str

    @property
    def where(self) -> str:
        return f"docs/guide.md:{self.line}"


@dataclass(frozen=True)
class Command:
    """One ``$ command`` of a shell session and the output the guide shows for it."""

    command: str
    expected: str


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block in order, with the marker on the line just before its fence."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE_RE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j] == "```"), None)
        if end is None:
            raise AssertionError(f"docs/guide.md:{i + 1}: the fence is never closed")
        marker = MARKER_RE.match(lines[i - 1]) if i > 0 else None
        kind, arg = (marker["kind"], marker["arg"].strip()) if marker else ("", "")
        body = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(line=i + 1, lang=fence["lang"], kind=kind, arg=arg, text=body))
        i = end + 1
    return blocks


def parse_session(text: str) -> list[Command]:
    """The ``$ `` commands of a session (a line ending in ``\\`` continues one) and their outputs."""
    commands: list[Command] = []
    command: str | None = None
    output: list[str] = []
    continued = False
    for line in text.splitlines():
        if continued and command is not None:
            command += "\n" + line
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            if command is not None:
                commands.append(Command(command, "".join(f"{o}\n" for o in output)))
            command, output = line[2:], []
            continued = line.endswith("\\")
        elif command is None:
            raise AssertionError(f"output before any command: {line!r}")
        else:
            output.append(line)
    if command is not None:
        commands.append(Command(command, "".join(f"{o}\n" for o in output)))
    return commands


def output_pattern(expected: str) -> re.Pattern[str]:
    """The shown output as a pattern: ``...`` is any text in a line; a line of ``...`` is any lines."""
    parts = []
    for line in expected.splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.compile("".join(parts))


def output_matches(expected: str, actual: str) -> bool:
    if actual and not actual.endswith("\n"):
        actual += "\n"
    return output_pattern(expected).fullmatch(actual) is not None


# ---------------------------------------------------------------- the page itself (no toolchain)


def test_every_code_block_of_the_guide_is_run_or_is_a_server_command() -> None:
    """A plugin file or a session the walk would skip could go stale unnoticed: only `sh` fences may go unmarked."""
    blocks = parse_blocks(GUIDE.read_text(encoding="utf-8"))
    unmarked = [(b.where, b.lang) for b in blocks if not b.kind and b.lang not in UNRUN_LANGUAGES]
    assert unmarked == []
    marked_unrun = [(b.where, b.lang) for b in blocks if b.kind and b.lang in UNRUN_LANGUAGES]
    assert marked_unrun == []
    for block in blocks:
        if block.kind == "run":
            assert block.lang == "console", block.where
            assert parse_session(block.text), f"{block.where}: a session without a command"
        elif block.kind == "insert":
            assert INSERT_RE.match(block.arg), f"{block.where}: insert needs 'PATH after LINE'"
        elif block.kind:
            assert block.arg and " " not in block.arg, f"{block.where}: {block.kind} needs one PATH"
    kinds = {b.kind for b in blocks}
    assert {"file", "append", "insert", "same", "run"} <= kinds


def test_a_marker_binds_to_the_fence_right_below_it() -> None:
    text = "<!-- guide:append a.ts -->\n```ts\nx\n```\n\n<!-- guide:run -->\n\n```console\n$ true\n```\n"
    assert [(b.kind, b.arg, b.text) for b in parse_blocks(text)] == [("append", "a.ts", "x\n"), ("", "", "$ true\n")]


def test_a_session_splits_into_commands_and_their_outputs() -> None:
    session = "$ arcana plugin call x.wasm \\\n    'GET /a'\nHTTP/1.1 200 OK\n...\n$ cd tasks\n$ true\n"
    assert parse_session(session) == [
        Command("arcana plugin call x.wasm \\\n    'GET /a'", "HTTP/1.1 200 OK\n...\n"),
        Command("cd tasks", ""),
        Command("true", ""),
    ]


def test_dots_stand_for_any_text_in_a_line_and_a_dots_line_for_any_lines() -> None:
    assert output_matches("built .../tasks.wasm\n", "built /tmp/x/tasks/tasks.wasm\n")
    assert not output_matches("built .../tasks.wasm\n", "built /tmp/x/tasks/notes.wasm\n")
    assert output_matches("HTTP/1.1 200 OK\n...\n}\n", "HTTP/1.1 200 OK\na: b\n\n{\n}\n")
    assert output_matches("a\n...\nb\n", "a\nb\n")
    assert not output_matches("a\n...\nb\n", "a\nb\nc\n")  # the whole output is compared, not a prefix
    assert not output_matches('"id": "...",\n', '"id": "x",\n"version": 1,\n')  # `...` never spans lines
    assert not output_matches("HTTP/1.1 200 OK\n", "HTTP/1.1 201 Created\n")


# ---------------------------------------------------------------- the walk (toolchain)


def _session_env(bin_dir: Path) -> dict[str, str]:
    """The author's shell: this interpreter's `arcana` and `python` first on PATH, no test-run settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCANA_", "PYTEST_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return env


def _shim_bin(tmp: Path) -> Path:
    """A folder where `python` runs this interpreter and `arcana` its console script.

    Scripts, not symlinks: a symlink to a virtualenv's python, called by another path, misses its pyvenv.cfg
    and runs the base interpreter without arcana.
    """
    arcana = Path(sys.executable).parent / "arcana"
    if not arcana.is_file():
        found = shutil.which("arcana")
        assert found is not None, "the `arcana` console script is not installed beside this interpreter"
        arcana = Path(found)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, target in (("python", Path(sys.executable)), ("arcana", arcana)):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {shlex.quote(str(target))} "$@"\n', encoding="utf-8")
        shim.chmod(0o755)
    return bin_dir


def _inside(root: Path, cwd: Path, rel: str, where: str) -> Path:
    target = (cwd / rel).resolve()
    assert target.is_relative_to(root), f"{where}: {rel} leaves the guide's folder"
    return target


def _apply(block: Block, root: Path, cwd: Path) -> None:
    if block.kind == "insert":
        spec = INSERT_RE.match(block.arg)
        assert spec is not None, block.where
        target = _inside(root, cwd, spec["path"], block.where)
        lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines) if line.rstrip("\n") == spec["line"]), None)
        assert at is not None, f"{block.where}: {spec['path']} has no line {spec['line']!r}"
        target.write_text("".join([*lines[: at + 1], block.text, *lines[at + 1 :]]), encoding="utf-8")
        return
    target = _inside(root, cwd, block.arg, block.where)
    if block.kind == "same":
        assert target.read_text(encoding="utf-8") == block.text, f"{block.where}: {block.arg} is not what it shows"
    elif block.kind == "file":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")
    else:  # append, one blank line after what is there
        before = target.read_text(encoding="utf-8")
        target.write_text(before.rstrip("\n") + "\n\n" + block.text, encoding="utf-8")


def _run_session(block: Block, root: Path, cwd: Path, env: dict[str, str]) -> Path:
    """Run each command of a session from ``cwd``; return the folder the session ends in."""
    for cmd in parse_session(block.text):
        if cmd.command.startswith("cd "):
            cwd = _inside(root, cwd, cmd.command[3:].strip(), block.where)
            assert cwd.is_dir(), f"{block.where}: {cmd.command}: no such folder"
            continue
        done = subprocess.run(
            ["bash", "-c", cmd.command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        first = cmd.expected.splitlines()[0] if cmd.expected else ""
        want_rc = 1 if ERROR_ANSWER_RE.match(first) else 0
        report = (
            f"{block.where}: $ {cmd.command}\nexit code {done.returncode} (the guide implies {want_rc})\n"
            f"--- the guide shows:\n{cmd.expected}--- stdout:\n{done.stdout}--- stderr:\n{done.stderr}"
        )
        assert done.returncode == want_rc, report
        assert output_matches(cmd.expected, done.stdout), report
    return cwd


@pytest.mark.toolchain
def test_the_guide_runs_from_plugin_new_to_its_own_passing_tests(tmp_path: Path) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("the guide's plugin is AssemblyScript: node and npm must be on PATH")
    root = tmp_path / "guide"
    root.mkdir()
    env = _session_env(_shim_bin(tmp_path))
    cwd = root
    sessions = 0
    for block in parse_blocks(GUIDE.read_text(encoding="utf-8")):
        if block.kind == "run":
            cwd = _run_session(block, root, cwd, env)
            sessions += 1
        elif block.kind:
            _apply(block, root, cwd)
    assert sessions >= 8
    # The walk ended in the plugin's folder with a fresh build of the final sources.
    assert (cwd / "tasks.wasm").is_file()
