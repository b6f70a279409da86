"""Runs the kernel and its edges in one event loop until told to stop.

The ASGI server is uvicorn (httptools + uvloop): measured against hypercorn
on the same Quart app it served about 2x the requests/s (see
bench/asgi_servers.py), and it serves TLS with client certificates. Its
HTTP protocol is our bounded subclass (arcana.edge.http_protocol): header
size and count, URL length, header-read timeout, connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import grpc
import uvicorn

from arcana.config import ArcanaConfig, ServerConfig, TlsConfig
from arcana.edge.grpc import start_grpc_server
from arcana.edge.http_protocol import HttpLimits, bounded_protocol
from arcana.edge.metrics import check_metrics_token
from arcana.edge.metrics_app import MetricsOnlyApp
from arcana.edge.rest import create_rest_app
from arcana.edge.worker_header import WorkerHeader
from arcana.exit_codes import ExitCode, StartupFailure
from arcana.kernel import Kernel
from arcana.listeners import bind_listener, check_port_free
from arcana.preflight import check_before_binding, check_database
from arcana.queue.scheduler import Scheduler
from arcana.queue.worker import Worker
from arcana.watcher import watch_plugins

logger = logging.getLogger("arcana.server")
# api: REST and gRPC only; worker: runs queued jobs only (no ports, but server.metrics_port when set);
# all: both in one process.
Role = Literal["api", "worker", "all"]
ROLES: tuple[Role, ...] = ("all", "api", "worker")
# Open files the process needs besides its HTTP connections: database pool, plugin files,
# gRPC connections, the watcher, logs. max_connections must fit under RLIMIT_NOFILE with these.
RESERVED_FILES = 256


def http_options(server: ServerConfig) -> dict[str, Any]:
    """uvicorn's settings for the bounds of arcana.edge.http_protocol and for proxies.

    X-Forwarded-For/-Proto are believed only from server.trusted_proxies: with
    none, uvicorn's proxy middleware is left out (its own default trusts
    127.0.0.1, so any local client could pick its address per request).
    WebSocket is off: no route serves it, and an upgraded connection would
    leave the bounded protocol.
    """
    return {
        "http": bounded_protocol(HttpLimits.of(server)),
        "ws": "none",
        "timeout_keep_alive": server.keepalive_timeout_s,
        "proxy_headers": bool(server.trusted_proxies),
        "forwarded_allow_ips": list(server.trusted_proxies),
    }


def check_open_files(server: ServerConfig) -> None:
    """Room for max_connections under the open-file limit: raise the soft limit if the hard one allows.

    Without it the cap would be a fiction: accept() would fail with EMFILE first.
    """
    needed = server.max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard == resource.RLIM_INFINITY or hard >= needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        return
    raise StartupFailure(
        ExitCode.CONFIG,
        f"server.max_connections {server.max_connections} needs {needed} open files, but the open-file limit is {hard}",
        "raise it (ulimit -n, LimitNOFILE= in systemd) or lower server.max_connections",
    )


def _tls_options(tls: TlsConfig) -> dict[str, Any]:
    """HTTPS when configured; with a client CA, a client certificate signed by it is required."""
    if not tls.enabled:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


def _nothing() -> None:
    pass


async def serve(
    config: ArcanaConfig, role: Role = "all", worker_index: int = 0, on_ready: Callable[[], None] = _nothing
) -> None:
    """Serve until SIGINT/SIGTERM. Raises StartupFailure (one line and an exit code) when it cannot start.

    Order matters for the operator: what can be checked without side effects
    (auth secret and keys, plugins folder, TLS files, database driver) first,
    then both ports, then one database connection, and only then the kernel
    and its plugins, so a busy port or a typo costs nothing and is reported
    as itself.

    With ``server.workers`` > 1 this is one of several processes (started by
    ``arcana.supervisor``, which checked the ports are free): the ports are
    bound with SO_REUSEPORT, shared with the others, and /metrics is also on
    ``metrics_port + worker_index`` when metrics_port is set. ``on_ready``
    runs once the plugin folder is loaded.
    """
    check_before_binding(config)
    shared = config.server.workers > 1
    if role == "worker":
        metrics_socket = _bind_worker_metrics(config.server, worker_index)
        try:
            check_database(config.database)
            await _work(config, metrics_socket, on_ready)
        finally:
            if metrics_socket is not None:
                metrics_socket.close()
        return
    check_open_files(config.server)
    check_metrics_token(config.server)
    server_config = config.server
    http_socket = bind_listener(
        server_config.host, server_config.http_port, "HTTP", "--http-port or server.http_port", reuse_port=shared
    )
    metrics_socket = None
    try:
        if shared:
            metrics_socket = _bind_worker_metrics(server_config, worker_index)
        else:  # the other workers hold the gRPC port already: the supervisor checked it before starting them
            check_port_free(server_config.host, server_config.grpc_port, "gRPC", "--grpc-port or server.grpc_port")
        check_database(config.database)
        await _serve_on(config, http_socket, role == "all", metrics_socket, on_ready)
    finally:
        http_socket.close()
        if metrics_socket is not None:
            metrics_socket.close()


async def _serve_on(
    config: ArcanaConfig,
    http_socket: socket.socket,
    with_worker: bool,
    metrics_socket: socket.socket | None = None,
    on_ready: Callable[[], None] = _nothing,
) -> None:
    kernel = Kernel(config)
    try:
        kernel.start()
        app: Any = create_rest_app(kernel)
        if config.server.workers > 1:
            app = WorkerHeader(app)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.server.host,
                port=config.server.http_port,
                log_config=None,
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=int(config.server.shutdown_grace_s),
                server_header=False,
                **http_options(config.server),
                **_tls_options(config.server.http_tls),
            )
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        # While serve() runs, uvicorn captures SIGINT/SIGTERM itself, stops, and
        # re-raises the signal on exit, which then reaches our handler above.
        # One process serves while it loads (/health answers, /ready says 503). One of several on a
        # shared port starts both edges only once loaded: until then the kernel sends it no gRPC
        # connection, and HTTP ones wait in its backlog rather than meet a 404 from a half-loaded
        # process (a restarted worker beside serving ones).
        shared = config.server.workers > 1
        grpc_server = None if shared else await _start_grpc(kernel, config)
        watcher = None
        try:
            serving = None if shared else asyncio.create_task(_serve_http(server, http_socket))
            await kernel.load_all()
            if grpc_server is None:
                grpc_server = await _start_grpc(kernel, config)
            if serving is None:
                serving = asyncio.create_task(_serve_http(server, http_socket))
            logger.info(
                "arcana ready",
                extra={
                    "plugins": sorted(p.name for p in kernel.plugins_view().plugins),
                    "http_port": http_socket.getsockname()[1],
                    "grpc_port": config.server.grpc_port,
                    "plugins_dir": str(kernel.plugins_dir),
                    "config": config.source,
                },
            )
            on_ready()
            if config.plugins.watch:
                watcher = asyncio.create_task(watch_plugins(kernel, stop))
            async with _serving_metrics(kernel, metrics_socket), _running_worker(kernel, with_worker):
                stopped = asyncio.create_task(stop.wait())
                await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
                server.should_exit = True
                await serving
        finally:
            stop.set()
            if grpc_server is not None:
                await grpc_server.stop(config.server.shutdown_grace_s)
            await kernel.core.limiter.close()  # on the loop its Redis connections belong to
            if watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    finally:
        kernel.close()


def _bind_worker_metrics(server: ServerConfig, worker_index: int = 0) -> socket.socket | None:
    """/metrics alone on server.metrics_port (+ worker_index), bound before anything starts; None when 0.

    The worker role's only port; with ``--workers N`` each process's own, so
    each can be scraped although the REST port lands on any one of them.
    """
    if not server.metrics_port:
        return None
    check_metrics_token(server)
    port = server.metrics_port + worker_index
    return bind_listener(server.host, port, "metrics", "server.metrics_port")


@contextlib.asynccontextmanager
async def _serving_metrics(kernel: Kernel, sock: socket.socket | None) -> AsyncIterator[None]:
    """/metrics alone on ``sock`` while inside (arcana.edge.metrics_app); nothing when ``sock`` is None."""
    if sock is None:
        yield
        return
    server_config = kernel.config.server
    options = {**http_options(server_config), **_tls_options(server_config.http_tls)}
    config = uvicorn.Config(MetricsOnlyApp(kernel), log_config=None, access_log=False, lifespan="off", **options)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(_serve_http(server, sock))
    try:
        yield
    finally:
        server.should_exit = True
        await serving


async def _work(
    config: ArcanaConfig, metrics_socket: socket.socket | None = None, on_ready: Callable[[], None] = _nothing
) -> None:
    """The worker role: plugins loaded and watched, queued jobs run; no port but server.metrics_port."""
    kernel = Kernel(config)
    try:
        kernel.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await kernel.load_all()
        watcher = asyncio.create_task(watch_plugins(kernel, stop)) if config.plugins.watch else None
        try:
            async with _serving_metrics(kernel, metrics_socket), _running_worker(kernel, True) as worker_done:
                logger.info(
                    "arcana worker ready",
                    extra={"plugins": sorted(p.name for p in kernel.plugins_view().plugins), "config": config.source},
                )
                on_ready()
                stopped: asyncio.Future[Any] = asyncio.create_task(stop.wait())
                # A worker that ended by itself (a bug) ends the process, for the supervisor to restart.
                await asyncio.wait([stopped, worker_done], return_when=asyncio.FIRST_COMPLETED)
                stopped.cancel()
        finally:
            stop.set()
            if watcher is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
    finally:
        kernel.close()


@contextlib.asynccontextmanager
async def _running_worker(kernel: Kernel, enabled: bool) -> AsyncIterator[asyncio.Future[None]]:
    """A job worker running while inside; on the way out it stops gracefully (see arcana.queue.worker).

    Yields a future that is done when the worker ended. The scheduler runs
    beside each worker: ``backend.tick`` makes several of them enqueue each
    [[schedule]] tick once.
    """
    idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    if not enabled:
        yield idle
        return
    worker = Worker(kernel.config.queue, kernel.jobs.backend, kernel.registry, tracing=kernel.tracing)
    task = asyncio.create_task(worker.run())
    loop = asyncio.get_running_loop()

    # A job enqueued in this process (a plugin call, an event) starts now, not at the next poll.
    def wake() -> None:
        loop.call_soon_threadsafe(worker.wake)

    unlisten = kernel.jobs.on_enqueued(wake)
    scheduler = Scheduler(kernel.jobs, lambda: kernel.registry.snapshot)
    scheduler.start()
    try:
        yield task
    finally:
        unlisten()
        await scheduler.stop()
        worker.stop()
        await task


async def _start_grpc(kernel: Kernel, config: ArcanaConfig) -> grpc.aio.Server:
    """The gRPC edge, its bind failure (checked free a moment ago, so a race) reported like the HTTP one."""
    try:
        return await start_grpc_server(kernel)
    except RuntimeError as exc:  # grpcio: "Failed to bind to address ..."
        if "bind" not in str(exc).lower():
            raise
        raise StartupFailure(
            ExitCode.UNAVAILABLE,
            f"cannot listen for gRPC on {config.server.host}:{config.server.grpc_port}: {exc}",
            "stop the process using the port or choose another (--grpc-port or server.grpc_port)",
        ) from None


async def _serve_http(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn on our socket; its sys.exit when the app's start-up fails becomes a StartupFailure."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit:
        raise StartupFailure(
            ExitCode.FAILED, "the HTTP application failed to start", "see the log lines above for why"
        ) from None
