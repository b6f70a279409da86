from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e.server import ArcanaServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ArcanaServer]]:
    servers: list[ArcanaServer] = []

    def start(plugins: Path, config: dict | None = None, wait_ready: bool = True) -> ArcanaServer:
        server = ArcanaServer(plugins, tmp_path, config)
        servers.append(server)
        return server.start(wait_ready)

    yield start
    for server in servers:
        server.stop()
