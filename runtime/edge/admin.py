"""Admin REST API (`/api/v1/admin`, role admin): the plugin listing, user administration and the job queue."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from arcana.core import require_role
from arcana.edge.admin_jobs import register_jobs_admin
from arcana.edge.users import register_user_admin
from arcana.kernel import Kernel
from arcana.views import FailureView, PluginsView, PluginView


def _plugin_json(p: PluginView) -> dict[str, Any]:
    limits = {"memory_mb": p.limits.memory_mb, "timeout_ms": p.limits.timeout_ms}
    return {
        "name": p.name,
        "version": p.version,
        "state": p.state,
        "source": p.source,
        "sha256": p.sha256,
        "loaded_at": p.loaded_at,
        "routes": [{"method": r.method, "path": r.path, "handler": r.handler, "public": r.public} for r in p.routes],
        "grpc": list(p.grpc),
        "limits": {**limits, "max_concurrency": p.limits.max_concurrency},
        "in_flight": p.in_flight,
        "last_error": list(p.last_error) if p.last_error is not None else None,
        "breaker": p.breaker,
        "inline": list(p.inline),
    }


def _failure_json(f: FailureView) -> dict[str, Any]:
    return {
        "name": f.name,
        "source": f.source,
        "state": f.state,
        "failed_at": f.failed_at,
        "errors": list(f.errors),
        "still_serving": f.still_serving is not None,
        "serving_version": f.still_serving,
    }


def plugins_json(view: PluginsView) -> dict[str, Any]:
    return {"plugins": [_plugin_json(p) for p in view.plugins], "failures": [_failure_json(f) for f in view.failures]}


def admin_blueprint(kernel: Kernel) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")

    @bp.before_request
    async def admins_only() -> None:
        require_role(kernel.authenticate(request.headers.get("authorization", "")), ("admin",))

    @bp.get("/plugins")
    async def plugins() -> Any:
        return plugins_json(kernel.plugins_view())

    register_user_admin(bp, kernel)
    register_jobs_admin(bp, kernel)
    return bp
