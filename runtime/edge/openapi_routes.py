"""`GET /openapi.json` (the live document, arcana.openapi) and `GET /docs` (Swagger UI on it, offline).

The docs page and its assets are package data (arcana/static): Swagger UI's dist files, vendored
with their license, and the page's own two files. Nothing is fetched from elsewhere, and the
page's Content-Security-Policy says so to the browser: scripts, styles and requests from this
origin only. Assets are read once and served from memory, from a fixed list (no path from the
request reaches the file system).
"""

from __future__ import annotations

import functools
from importlib import resources

from quart import Blueprint, Response, request

from arcana.errors import NotFound
from arcana.kernel import Kernel
from arcana.openapi import LiveDocument

# name under /docs/assets -> (file in the package, content type)
ASSETS: dict[str, tuple[str, str]] = {
    "swagger-ui-bundle.js": ("static/swagger-ui/swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "swagger-ui.css": ("static/swagger-ui/swagger-ui.css", "text/css; charset=utf-8"),
    "init.js": ("static/docs/init.js", "text/javascript; charset=utf-8"),
    "LICENSE": ("static/swagger-ui/LICENSE", "text/plain; charset=utf-8"),
}
PAGE = "static/docs/index.html"
# data: for Swagger UI's inline SVG icons (in its CSS) and the page's empty favicon.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@functools.cache
def packaged(name: str) -> bytes:
    return resources.files("arcana").joinpath(name).read_bytes()


def openapi_blueprint(kernel: Kernel) -> Blueprint:
    bp = Blueprint("openapi", __name__)
    live = LiveDocument(lambda: kernel.registry.snapshot)

    @bp.get("/openapi.json")
    async def openapi_json() -> Response:
        published = live.current()
        etag = f'"{published.version}"'
        headers = {"etag": etag, "cache-control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(b"", 304, headers)
        return Response(published.body, 200, {"content-type": "application/json", **headers})

    @bp.get("/docs")
    async def docs() -> Response:
        return Response(packaged(PAGE), 200, {"content-type": "text/html; charset=utf-8", **PAGE_HEADERS})

    @bp.get("/docs/assets/<name>")
    async def asset(name: str) -> Response:
        found = ASSETS.get(name)
        if found is None:
            raise NotFound(f"no asset {name}")
        path, content_type = found
        headers = {"content-type": content_type, "x-content-type-options": "nosniff", "cache-control": "no-cache"}
        return Response(packaged(path), 200, headers)

    return bp
