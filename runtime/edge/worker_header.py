"""``X-Arcana-Worker: <pid>`` on every REST answer of a process started by `arcana serve --workers N`.

With several processes behind one port (SO_REUSEPORT) a client, a test or an
operator reading a slow answer can tell which process served it; the pid also
names the process in the logs. Added only when N > 1: one process has nothing
to tell apart.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
HEADER = "x-arcana-worker"


class WorkerHeader:
    """ASGI middleware: the header on each HTTP response start; lifespan and the rest pass through."""

    def __init__(self, app: App) -> None:
        self._app = app
        self._header = (HEADER.encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        header = self._header

        async def send_with_header(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self._app(scope, receive, send_with_header)
