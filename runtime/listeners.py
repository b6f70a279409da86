"""Listening sockets bound before anything expensive starts, with failures an operator can act on.

uvicorn, left to bind its own port, logs the OSError and calls ``sys.exit``
from inside ``Server.serve``; grpcio raises a bare RuntimeError. Binding the
HTTP socket here (then ``server.serve(sockets=[sock])``) and checking the gRPC
port the same way turns both into a :class:`StartupFailure` naming the port
and the fix, before the kernel opens the database or loads a plugin.
"""

from __future__ import annotations

import errno
import socket

from arcana.exit_codes import ExitCode, StartupFailure

# uvicorn's default backlog; connections made while the kernel starts wait in it.
BACKLOG = 2048


def bind_listener(host: str, port: int, what: str, option: str, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port and listening, like uvicorn's own (SO_REUSEADDR, no SO_REUSEPORT).

    ``reuse_port``: SO_REUSEPORT as well, for `arcana serve --workers N`, whose
    processes each bind the same port and share its connections. A socket
    bound without it (another `arcana serve`, or the supervisor's check that
    the port is free) still fails on a port they hold.

    Listening at once holds the port: on Linux another socket with
    SO_REUSEADDR could still bind a port that is bound but not listening.
    ``what`` ("HTTP", "gRPC") and ``option`` (where the port is configured)
    only shape the error message.
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupFailure(
            ExitCode.CONFIG,
            f"cannot listen for {what} on {host}:{port}: the host does not resolve ({exc.strerror})",
            "fix --host or server.host",
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise _bind_failure(exc, what, host, port, option) from None
    return sock


def check_port_free(host: str, port: int, what: str, option: str) -> None:
    """Fail now if host:port cannot be listened on (for a server that binds its own socket later)."""
    bind_listener(host, port, what, option).close()


def _bind_failure(exc: OSError, what: str, host: str, port: int, option: str) -> StartupFailure:
    where = f"cannot listen for {what} on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return StartupFailure(
            ExitCode.UNAVAILABLE,
            f"{where}: the port is already in use",
            f"stop the process using it or choose another port ({option})",
        )
    if exc.errno == errno.EACCES:
        return StartupFailure(
            ExitCode.UNAVAILABLE,
            f"{where}: permission denied",
            f"choose a port above 1023 ({option}) or run with the right to bind it",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupFailure(
            ExitCode.CONFIG, f"{where}: the address is not on this machine", "fix --host or server.host"
        )
    return StartupFailure(ExitCode.UNAVAILABLE, f"{where}: {exc.strerror or exc}", f"check the address ({option})")
