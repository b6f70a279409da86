"""The REST edge: Quart in, the dispatch core, Quart out. Nothing else.

Quart's context globals (`request`) stay inside this module.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from arcana.dispatch import call_http, route_http
from arcana.edge.admin import admin_blueprint
from arcana.edge.auth_rest import auth_blueprint
from arcana.edge.errors import HTTP_STATUS, error_body, error_headers
from arcana.envelopes import HttpRequest
from arcana.errors import ArcanaError, ErrorCode, PayloadTooLarge
from arcana.kernel import Kernel

logger = logging.getLogger("arcana.rest")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HTTP_ERROR_CODES = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED,
                    413: ErrorCode.PAYLOAD_TOO_LARGE, 400: ErrorCode.VALIDATION_FAILED}


def request_id() -> str:
    given = request.headers.get("x-request-id", "")
    return given if REQUEST_ID_RE.match(given) else uuid.uuid4().hex


def _error(exc: ArcanaError, rid: str) -> Response:
    headers = error_headers(exc)
    if exc.code in (ErrorCode.UNAUTHORIZED, ErrorCode.TOKEN_EXPIRED, ErrorCode.INVALID_CREDENTIALS):
        headers["www-authenticate"] = "Bearer"
    headers["x-request-id"] = rid
    return Response(error_body(exc.code, exc.message, rid), HTTP_STATUS[exc.code], headers)


def create_rest_app(kernel: Kernel) -> Quart:
    app = Quart("arcana")
    app.config["MAX_CONTENT_LENGTH"] = kernel.config.server.max_body_bytes
    max_body = kernel.config.server.max_body_bytes
    app.register_blueprint(admin_blueprint(kernel))
    app.register_blueprint(auth_blueprint(kernel))

    @app.get("/health")
    async def health() -> Any:
        return {"status": "ok"}

    @app.get("/metrics")
    async def metrics() -> Response:
        # Prometheus exposition of the process registry (capabilities register their metrics there).
        return Response(generate_latest(), 200, {"content-type": CONTENT_TYPE_LATEST})

    @app.get("/ready")
    async def ready() -> Any:
        if not kernel.ready:
            return {"status": "loading"}, 503
        return {"status": "ready", "plugins": len(kernel.registry.snapshot.plugins)}

    @app.route("/", defaults={"path": ""}, methods=METHODS, provide_automatic_options=False)
    @app.route("/<path:path>", methods=METHODS, provide_automatic_options=False)
    async def plugin_route(path: str) -> Response:
        rid = request_id()
        raw_path = request.scope.get("raw_path", b"").split(b"?", 1)[0].decode("latin-1") or request.path
        match = route_http(kernel.registry.snapshot, request.method, raw_path)
        principal = kernel.auth.authenticate(request.headers.get("authorization", ""))
        if (request.content_length or 0) > max_body:
            raise PayloadTooLarge(f"request body is larger than {max_body} bytes")
        req = HttpRequest(
            method=request.method, path=request.path,
            query={k: request.args.getlist(k) for k in request.args},
            # The verified principal replaces the credential: plugins never see tokens.
            headers={k.lower(): v for k, v in request.headers.items() if k.lower() != "authorization"},
            body=await request.get_data(cache=False),
            request_id=rid, traceparent=request.headers.get("traceparent", ""),
            principal=principal.as_json() if principal else None)
        out = await call_http(match, req, principal)
        out.headers["x-request-id"] = rid
        return Response(out.body, out.status, out.headers)

    @app.errorhandler(ArcanaError)
    async def arcana_error(exc: ArcanaError) -> Response:
        return _error(exc, request_id())

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = HTTP_ERROR_CODES.get(exc.code or 500, ErrorCode.INTERNAL)
        message = "request body is too large" if exc.code == 413 else (exc.description or exc.name)
        return _error(ArcanaError(message, code=code), request_id())

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        rid = request_id()
        logger.exception("unhandled error", extra={"request_id": rid})
        return _error(ArcanaError("internal error", code=ErrorCode.INTERNAL), rid)

    return app
