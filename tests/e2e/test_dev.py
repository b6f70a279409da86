"""`arcana dev DIR` as an author runs it: a real process builds a Zig plugin's sources, serves them, and
rebuilds and reloads them as they are saved; a broken save leaves the last good build serving.

Prints the time from each saved edit to the first response of the new build (no assertion on it).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import FIXTURES
from e2e.server import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.toolchain]

ROUTE = "/api/v1/test/version"
MARKER = 'const VERSION = "{}";'
# Generous: the first build of a cold Zig cache takes a while on a busy machine.
TIMEOUT_S = 180.0


class DevProcess:
    """`arcana dev` on free ports, its stdout (the token) and stderr (the log) in files."""

    def __init__(self, src: Path, workdir: Path, *extra: str) -> None:
        self.port, self.grpc_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.out_path, self.log_path = workdir / "dev.out", workdir / "dev.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
        ports = ["--port", str(self.port), "--grpc-port", str(self.grpc_port)]
        with self.out_path.open("wb") as out, self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "arcana.cli", "dev", str(src), *ports, *extra], stdout=out, stderr=log, env=env
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Ctrl-C, as at a terminal."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def plugin_src(tmp_path: Path) -> Path:
    src = tmp_path / "versioned"
    shutil.copytree(FIXTURES / "versioned", src)
    return src


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[..., DevProcess]]:
    started: list[DevProcess] = []

    def start(src: Path, *extra: str) -> DevProcess:
        started.append(DevProcess(src, tmp_path, *extra))
        return started[-1]

    yield start
    for dev in started:
        dev.stop()


def version_of(dev: DevProcess) -> str | None:
    try:
        r = httpx.get(dev.url + ROUTE, timeout=5)
    except httpx.TransportError:
        return None
    return r.json().get("version") if r.status_code == 200 else None


def wait_until(dev: DevProcess, what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if done():
            return
        if dev.proc.poll() is not None:
            raise AssertionError(f"arcana dev exited with {dev.proc.returncode} waiting for {what}:\n{dev.log()}")
        time.sleep(0.01)
    raise AssertionError(f"no {what} after {TIMEOUT_S}s:\n{dev.log()[-4000:]}")


def save_version(src: Path, old: str, new: str) -> None:
    """Change the answer, as an editor saving the file would."""
    main = src / "src" / "main.zig"
    main.write_text(main.read_text().replace(MARKER.format(old), MARKER.format(new)))


def test_saved_edits_are_served_and_a_broken_save_keeps_the_last_good_build(
    plugin_src: Path, start_dev: Callable[..., DevProcess]
) -> None:
    dev = start_dev(plugin_src, "--as", "ada", "--roles", "admin")
    wait_until(dev, "first build served", lambda: version_of(dev) == "v1")

    # The token printed for --as is one the server accepts; its admin listing names the build dev reported.
    token = dev.out_path.read_text().strip()
    listing = httpx.get(f"{dev.url}/api/v1/admin/plugins", headers={"authorization": f"Bearer {token}"})
    assert listing.status_code == 200, listing.text
    (served,) = [p for p in listing.json()["plugins"] if p["name"] == "versioned"]
    assert f"build {served['sha256'][:12]}" in dev.log()

    samples = []
    previous = "v1"
    for n in range(2, 7):
        current = f"v{n}"
        saved = time.monotonic()
        save_version(plugin_src, previous, current)
        wait_until(dev, f"version {current}", lambda current=current: version_of(dev) == current)
        samples.append(time.monotonic() - saved)
        previous = current
    print(
        f"\narcana dev: saved edit -> new response: {', '.join(f'{s:.2f}' for s in samples)} s; "
        f"median {statistics.median(samples):.2f} s"
    )

    main = plugin_src / "src" / "main.zig"
    good = main.read_text()
    main.write_text(good + "\nbroken(\n")
    wait_until(dev, "the build error", lambda: "build failed" in dev.log())
    log = dev.log()
    assert "error: expected" in log  # the compiler's own message, with its file and line
    assert re.search(r"main\.zig:\d+:\d+", log)
    assert version_of(dev) == previous  # the last good build keeps serving

    main.write_text(good.replace(MARKER.format(previous), MARKER.format("fixed")))
    wait_until(dev, "the fixed build", lambda: version_of(dev) == "fixed")

    assert dev.stop() == 0
    assert "Traceback" not in dev.log()


def test_a_folder_without_a_plugin_is_a_usage_error(tmp_path: Path, start_dev: Callable[..., DevProcess]) -> None:
    (tmp_path / "empty").mkdir()
    dev = start_dev(tmp_path / "empty")
    assert dev.proc.wait(60) == 2
    assert "has no plugin.toml" in dev.log()
