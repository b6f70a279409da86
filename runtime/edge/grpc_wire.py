"""What both gRPC handlers (plugin methods and kernel services) read from and answer on a call."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable

import grpc

from arcana.edge.grpc_errors import grpc_status, status_message
from arcana.errors import ArcanaError

# A unary handler's body; grpc.aio.ServicerContext is generic only to type checkers, hence the string.
Behavior = Callable[[bytes, "grpc.aio.ServicerContext[bytes, bytes]"], Awaitable[bytes]]


def metadata_of(context: grpc.aio.ServicerContext[bytes, bytes]) -> dict[str, str]:
    """Invocation metadata as one string per key (binary values base64, repeated keys joined by commas)."""
    out: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
        out[key] = f"{out[key]},{text}" if key in out else text
    return out


async def abort(context: grpc.aio.ServicerContext[bytes, bytes], exc: ArcanaError) -> None:
    """End the call with the error's status; ``context.abort`` raises, so nothing runs after this."""
    await context.abort(grpc_status(exc), status_message(exc))
