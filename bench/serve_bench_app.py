"""The server under test: Arcana's REST app plus a native Quart route, in one process.

    python bench/serve_bench_app.py --port N --plugins DIR            # kernel app + native route, uvicorn
    python bench/serve_bench_app.py --port N --app native --asgi hypercorn

``--app full`` builds the real kernel (``Kernel(load_config(...))`` serving
DIR), calls ``kernel.start()``, awaits ``kernel.load_all()``, builds ``create_rest_app(kernel)`` and
adds ``GET /bench/native/hello/<name>`` on that same app, so the plugin route
and the native route share the server, the process and the middleware.
``--app native`` is a bare Quart app with only the native route (for the ASGI
server comparison). ``--variant`` applies one of the what-if changes of
bench/whatif.py; ``--set section.key=value`` overrides one config key.

The ASGI server is run the way runtime/server.py runs it: uvicorn with uvloop
and httptools, no access log, no server header; hypercorn is given uvloop too
so that only the HTTP layer differs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import tempfile
from pathlib import Path

from quart import Quart

RAW_PREFIX = "/bench/raw/hello/"


class RawAsgiHello:
    """The physical limit: ``GET /bench/raw/hello/<name>`` answered by a bare ASGI callable, in front of everything.

    Same body as the other two routes, built the cheapest way an ASGI app can;
    every other request goes on to ``app``.
    """

    def __init__(self, app: object) -> None:
        self._app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http" and scope["path"].startswith(RAW_PREFIX):
            name = scope["path"][len(RAW_PREFIX) :]
            body = b'{"message":"Hello, ' + name.encode() + b'!"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": body})  # type: ignore[operator]
            return
        await self._app(scope, receive, send)  # type: ignore[operator]


def add_native_route(app: Quart) -> None:
    async def native_hello(name: str) -> dict[str, str]:
        return {"message": f"Hello, {name}!"}

    app.add_url_rule("/bench/native/hello/<name>", "bench_native_hello", native_hello, methods=["GET"])


async def build_app(
    kind: str, plugins: Path | None, workdir: Path, overrides: list[str] = ()
) -> tuple[Quart, object | None]:
    if kind == "native":
        app = Quart("bench")
        add_native_route(app)
        return app, None
    from arcana.config import load_config
    from arcana.edge.rest import create_rest_app
    from arcana.kernel import Kernel
    from common import isolated_env

    env = {"ARCANA_PLUGINS__WATCH": "false", "ARCANA_LOGGING__LEVEL": "warning", **isolated_env(workdir)}
    if plugins is not None:
        env["ARCANA_PLUGINS__DIR"] = str(plugins.resolve())
    for item in overrides:  # e.g. executor.threads=2
        key, _, value = item.partition("=")
        env["ARCANA_" + key.upper().replace(".", "__")] = value
    kernel = Kernel(load_config(None, environ=env))
    kernel.start()
    await kernel.load_all()
    app = create_rest_app(kernel)
    add_native_route(app.kernel_app)  # the native route on the kernel's Quart app, behind the same edge
    return app, kernel


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    from whatif import patch_pool, wrap_app

    patch_pool(args.variant)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="arcana-bench-app-"))
    quart_app, kernel = await build_app(args.app, args.plugins, workdir, args.set)
    app = RawAsgiHello(wrap_app(args.variant, quart_app, kernel))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.asgi == "uvicorn":
            import uvicorn

            from arcana.config import ServerConfig
            from arcana.kernel import Kernel
            from arcana.server import http_options

            # The same HTTP protocol (bounds, proxies) that `arcana serve` runs, for every app variant.
            server_config = kernel.config.server if isinstance(kernel, Kernel) else ServerConfig()
            server = uvicorn.Server(
                uvicorn.Config(
                    app,
                    host="127.0.0.1",
                    port=args.port,
                    loop="uvloop",
                    log_config=None,
                    access_log=False,
                    lifespan="on",
                    server_header=False,
                    **http_options(server_config),
                )
            )
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            serving = asyncio.create_task(server.serve())
            await stop.wait()
            server.should_exit = True
            await serving
        else:
            from hypercorn.asyncio import serve
            from hypercorn.config import Config

            config = Config()
            config.bind = [f"127.0.0.1:{args.port}"]
            config.accesslog = None
            config.errorlog = None
            config.include_server_header = False
            await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        if kernel is not None:
            kernel.close()  # type: ignore[attr-defined]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plugins", type=Path)
    parser.add_argument("--workdir", type=Path, help="where the kernel keeps its state (default: a temp folder)")
    parser.add_argument("--app", choices=["full", "native"], default="full")
    parser.add_argument("--variant", default="none", help="a what-if variant from bench/whatif.py")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override, e.g. executor.threads=2",
    )
    parser.add_argument("--asgi", choices=["uvicorn", "hypercorn"], default="uvicorn")
    import uvloop

    uvloop.run(main(parser.parse_args()))
