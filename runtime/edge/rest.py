"""The REST edge: the kernel's own routes on Quart, plugin routes on plain ASGI in front of it.

`create_rest_app` returns the ASGI application to serve: `PluginHttpEdge`
(plugin space) wrapping the Quart app (health, ready, metrics, auth, admin).
Quart's context globals (`request`) stay inside the edge modules.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST
from quart import Quart, Response, request
from quart.routing import QuartMap
from quart.wrappers import BaseRequestWebsocket
from werkzeug.exceptions import BadHost, HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.routing import MapAdapter

from arcana.core import request_id as pick_request_id
from arcana.core import unexpected as internal_error
from arcana.edge.admin import admin_blueprint
from arcana.edge.auth_rest import auth_blueprint
from arcana.edge.errors import error_response
from arcana.edge.http_metrics import KERNEL, ROUTE_KEY, kernel_template
from arcana.edge.metrics import MetricsAccess, exposition, kernel_registry
from arcana.edge.openapi_routes import openapi_blueprint
from arcana.edge.plugin_http import ASGIApp, PluginHttpEdge
from arcana.errors import ArcanaError, ErrorCode, MethodNotAllowed, NotFound, ServiceUnavailable
from arcana.kernel import Kernel
from arcana.resilience.metrics import breaker_registry

logger = logging.getLogger("arcana.rest")
# Binds the URL map for a request whose Host werkzeug refuses (see KernelQuart); never shown or matched.
UNUSED_HOST = "invalid"
HTTP_ERROR_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    400: ErrorCode.VALIDATION_FAILED,
}


def request_id() -> str:
    return pick_request_id(request.headers.get("x-request-id", ""))


def _error(exc: ArcanaError, rid: str) -> Response:
    status, body, headers = error_response(exc, rid)
    return Response(body, status, headers)


def create_rest_app(kernel: Kernel) -> PluginHttpEdge:
    """The ASGI app to serve; ``.kernel_app`` is the Quart app behind it."""
    # Quart types its ASGI signature with precise TypedDicts; ours is the general mapping form of the same protocol.
    return PluginHttpEdge(kernel, cast(ASGIApp, create_kernel_app(kernel)))


def _http_error(exc: HTTPException) -> ArcanaError:
    """A werkzeug/Quart HTTP error in the public model; a 405 keeps its allowed methods (for `Allow`)."""
    if isinstance(exc, WerkzeugMethodNotAllowed):
        allowed = frozenset(exc.valid_methods or ())
        listed = ", ".join(sorted(allowed))
        return MethodNotAllowed(f"{request.method} is not allowed on {request.path}; allowed: {listed}", allowed)
    code = HTTP_ERROR_CODES.get(exc.code or 500, ErrorCode.INTERNAL)
    message = {404: f"no route for {request.path}", 413: "request body is too large"}.get(
        exc.code or 500, exc.description or exc.name
    )
    return ArcanaError(message, code=code)


class KernelQuart(Quart):
    """Quart routing by path alone, whatever the Host header says.

    werkzeug IDNA-encodes the Host to bind the URL map and raises BadHost
    for one it cannot encode (a label over 63 characters, an empty label as
    in "a..b"), though such a host is valid HTTP. Quart binds while it builds
    the request context, before any error handler applies, so the client got
    a 500 (uvicorn's plain one on kernel paths) and the log a traceback. The
    kernel matches no hosts or subdomains, sets no SERVER_NAME and builds no
    absolute URLs, so such a request is served as any other, as plugin
    routes serve it (the plugin edge never reads the Host).
    """

    def create_url_adapter(self, request: BaseRequestWebsocket | None) -> MapAdapter | None:
        try:
            return super().create_url_adapter(request)
        except BadHost:
            if request is None:  # only with a request does Quart bind from the Host header
                raise
            return cast(QuartMap, self.url_map).bind_to_request(request, "", UNUSED_HOST)


def create_kernel_app(kernel: Kernel) -> Quart:
    app = KernelQuart("arcana")
    app.config["MAX_CONTENT_LENGTH"] = kernel.config.server.max_body_bytes
    # werkzeug answers a path with "//" by a redirect (an HTML 308 that bypasses
    # every error handler) or, for leading slashes, by quietly serving the
    # route. Neither is a route we declared: such paths are 404 in the error
    # model, as they are in plugin space. Set before any rule is added (rules
    # copy the setting when bound).
    app.url_map.merge_slashes = False

    @app.before_request
    async def label_route() -> None:
        # The matched rule's template for arcana.edge.http_metrics; unmatched requests stay "<unmatched>".
        if request.url_rule is not None:
            cast(dict[str, Any], request.scope)[ROUTE_KEY] = (kernel_template(request.url_rule.rule), KERNEL)

    @app.before_request
    async def refuse_empty_segments() -> None:
        path = str(request.scope.get("path", request.path))  # request.path has its leading slashes merged already
        if "//" in path:
            raise NotFound(f"no route for {path}")

    app.register_blueprint(admin_blueprint(kernel))
    app.register_blueprint(auth_blueprint(kernel))
    app.register_blueprint(openapi_blueprint(kernel))

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    metrics_access = MetricsAccess(kernel.config.server, kernel.authenticate)
    kernel_metrics = kernel_registry(lambda: kernel.jobs.stats(), lambda: kernel.registry.snapshot)
    breaker_metrics = breaker_registry(kernel.resilience)

    @app.get("/metrics")
    async def metrics() -> Response:
        # Prometheus exposition of the process registry (capabilities register their metrics there) and
        # of the kernel's gauges (queue depth, plugin pools), read on a thread (bounded by a timeout); a
        # scrape token or an admin token opens it (arcana.edge.metrics).
        metrics_access.check(request.headers.get("authorization", ""))
        body = await asyncio.to_thread(exposition, kernel_metrics, breaker_metrics)
        return Response(body, 200, {"content-type": CONTENT_TYPE_LATEST})

    @app.get("/ready")
    async def ready() -> Any:
        state = await kernel.readiness()
        if not state.ready:
            raise ServiceUnavailable(state.reason, retry_after=state.retry_after_s)
        return {"status": "ready", "plugins": state.plugins}

    @app.errorhandler(ArcanaError)
    async def arcana_error(exc: ArcanaError) -> Response:
        return _error(exc, request_id())

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return _error(_http_error(exc), request_id())

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        rid = request_id()
        return _error(internal_error(exc, rid), rid)

    return app
