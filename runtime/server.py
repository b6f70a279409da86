"""Runs the kernel and its edges in one event loop until told to stop.

The ASGI server is uvicorn (httptools + uvloop): measured against hypercorn
on the same Quart app it served about 2x the requests/s (see
bench/asgi_servers.py), and it serves TLS with client certificates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from typing import Any

import uvicorn

from arcana.config import ArcanaConfig, TlsConfig
from arcana.edge.grpc import start_grpc_server
from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from arcana.watcher import watch_plugins

logger = logging.getLogger("arcana.server")


def _tls_options(tls: TlsConfig) -> dict[str, Any]:
    """HTTPS when configured; with a client CA, a client certificate signed by it is required."""
    if not tls.enabled:
        return {}
    options: dict[str, Any] = {"ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    if tls.client_ca_file:
        options |= {"ssl_ca_certs": tls.client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


async def serve(config: ArcanaConfig) -> None:
    kernel = Kernel(config)
    kernel.start()
    app = create_rest_app(kernel)
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
            **_tls_options(config.server.http_tls),
        )
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # While serve() runs, uvicorn captures SIGINT/SIGTERM itself, stops, and
    # re-raises the signal on exit, which then reaches our handler above.
    watcher = None
    grpc_server = await start_grpc_server(kernel)
    try:
        serving = asyncio.create_task(server.serve())
        await kernel.load_all()
        logger.info(
            "arcana ready",
            extra={
                "plugins": sorted(p.name for p in kernel.plugins_view().plugins),
                "http_port": config.server.http_port,
                "grpc_port": config.server.grpc_port,
                "plugins_dir": str(kernel.plugins_dir),
            },
        )
        if config.plugins.watch:
            watcher = asyncio.create_task(watch_plugins(kernel, stop))
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([serving, stopped], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
    finally:
        stop.set()
        await grpc_server.stop(config.server.shutdown_grace_s)
        if watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        kernel.close()
