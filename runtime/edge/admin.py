"""Admin REST API (`/api/v1/admin`). Unauthenticated until the auth issue lands."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from arcana.auth.service import require_role
from arcana.edge.users import register_user_admin
from arcana.kernel import Kernel
from arcana.registry import LoadedPlugin


def _plugin_view(p: LoadedPlugin, last_error: list[str] | None) -> dict[str, Any]:
    m = p.manifest
    return {
        "name": m.name,
        "version": m.version,
        "state": "serving",
        "source": str(p.source),
        "sha256": p.sha256,
        "loaded_at": p.loaded_at,
        "routes": [
            {"method": r.method, "path": r.path.raw, "handler": r.handler, "public": r.public} for r in m.routes
        ],
        "grpc": [g.method for g in m.grpc],
        "limits": {
            "memory_mb": p.pool.limits.memory_mb,
            "timeout_ms": p.pool.limits.timeout_ms,
            "max_concurrency": p.pool.limits.max_concurrency,
        },
        "in_flight": p.pool.in_flight,
        "last_error": last_error,
    }


def plugins_listing(kernel: Kernel) -> dict[str, Any]:
    """What is loaded and what was refused: shared by the REST and gRPC admin APIs."""
    snapshot = kernel.registry.snapshot
    failures = kernel.registry.failures
    errors_by_name = {f.plugin: [str(x) for x in f.problems] for f in failures.values() if f.plugin}
    serving = [_plugin_view(p, errors_by_name.get(p.name)) for p in snapshot.plugins.values()]
    failed = [
        {
            "name": f.plugin,
            "source": str(f.source),
            "state": "failed",
            "failed_at": f.at,
            "errors": [str(x) for x in f.problems],
            "still_serving": f.plugin in snapshot.plugins if f.plugin else False,
        }
        for f in failures.values()
    ]
    return {"plugins": sorted(serving, key=lambda v: v["name"]), "failures": sorted(failed, key=lambda v: v["source"])}


def admin_blueprint(kernel: Kernel) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/api/v1/admin")

    @bp.before_request
    async def admins_only() -> None:
        require_role(kernel.auth.authenticate(request.headers.get("authorization", "")), ("admin",))

    @bp.get("/plugins")
    async def plugins() -> Any:
        return plugins_listing(kernel)

    register_user_admin(bp, kernel)
    return bp
