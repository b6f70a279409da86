"""A kernel's REST app called in process over httpx, and a one-route plugin to call (tracing and log tests)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from fakes import FakePlugin, Kernels, manifest_toml, route, write_plugin


def rest(kernel: Kernel, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def main() -> httpx.Response:
        await kernel.load_all()
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            return await client.request(method, url, **kwargs)

    return asyncio.run(main())


def serve_app(kernels: Kernels, handler: Any, version: str = "1.0.0") -> None:
    """Plugin "app" (``version``) answering POST /api/things/{id} (role user) with ``handler``; it may log."""
    kernels.engine.define("app", FakePlugin({"h": handler}, imports=("log",)))
    routes = [route("POST", "/api/things/{id}", "h", roles=["user"])]
    write_plugin(kernels.plugins, manifest_toml("app", version, routes=routes, capabilities={"log": True}))
