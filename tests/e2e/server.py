"""A real `arcana serve` process on free ports, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import yaml

# The HS256 secret every test server signs with, so tests can mint tokens as an
# independent issuer would (and forge bad ones).
TEST_SECRET = "arcana-test-secret-0123456789-abcdefghijklmnop"
AUDIENCE = ISSUER = "arcana"


# A day: tokens minted when a test module is collected must outlive the whole suite.
TOKEN_TTL_S = 86_400


def mint(
    sub: str = "u-test",
    roles: list[str] | None = None,
    secret: str = TEST_SECRET,
    ttl: int = TOKEN_TTL_S,
    **claims: object,
) -> str:
    now = int(time.time())
    payload = {
        "sub": sub,
        "roles": roles or [],
        "iat": now,
        "exp": now + ttl,
        "jti": f"j-{now}-{sub}",
        "iss": ISSUER,
        "aud": AUDIENCE,
        **claims,
    }
    return jwt.encode(payload, secret, algorithm="HS256")


def admin_headers() -> dict[str, str]:
    return {"authorization": f"Bearer {mint('admin-test', ['admin'])}"}


# Ports handed out in this run: the kernel may give a just-closed port again, so two calls in a row
# (a REST and a gRPC port) could otherwise name the same port and the server could not bind its second.
_GIVEN: set[int] = set()


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


class ArcanaServer:
    def __init__(
        self,
        plugins: Path,
        workdir: Path,
        config: dict | None = None,
        role: str = "all",
        extra_args: list[str] | None = None,
    ) -> None:
        self.plugins = plugins
        # More `arcana serve` flags, e.g. ["--workers", "2"].
        self.extra_args = list(extra_args or [])
        # "worker" opens no port: it is ready when it logs so.
        self.role = role
        self.port = free_port()
        self.grpc_port = free_port()
        self.grpc_address = f"127.0.0.1:{self.grpc_port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.config_path = workdir / f"config-{self.port}.yaml"
        config = dict(config or {})
        # Each server gets a database of its own unless the test chooses one.
        config.setdefault("database", {"url": f"sqlite:///{workdir / f'arcana-{self.port}.db'}"})
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> ArcanaServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCANA_")}
        env["ARCANA_JWT_SECRET"] = TEST_SECRET
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arcana.cli",
                "serve",
                "--config",
                str(self.config_path),
                "--plugins",
                str(self.plugins),
                "--http-port",
                str(self.port),
                "--grpc-port",
                str(self.grpc_port),
                "--role",
                self.role,
                *self.extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"arcana exited with {self.proc.returncode}:\n{self.logs()}")
            if self.role == "worker":
                if "arcana worker ready" in self.logs():
                    return
            else:
                try:
                    if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"arcana not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (a crashed or OOM-killed process)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode
