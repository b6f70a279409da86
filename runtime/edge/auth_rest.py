"""`/api/v1/auth`: login, refresh, logout. The core is `arcana.auth.service`."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, request

from arcana.edge.users import json_object
from arcana.kernel import Kernel


def auth_blueprint(kernel: Kernel) -> Blueprint:
    bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")

    @bp.post("/login")
    async def login() -> Any:
        body = await json_object()
        address = request.remote_addr or "unknown"
        pair = await asyncio.to_thread(kernel.identity.login, body.get("email"), body.get("password"), address)
        return pair.as_json()

    @bp.post("/refresh")
    async def refresh() -> Any:
        body = await json_object()
        return (await asyncio.to_thread(kernel.identity.refresh, body.get("refresh_token"))).as_json()

    @bp.post("/logout")
    async def logout() -> Any:
        """Ends the refresh family and the access tokens issued before; ``"everywhere": true`` every session too."""
        body = await json_object()
        await asyncio.to_thread(kernel.identity.logout, body.get("refresh_token"), body.get("everywhere", False))
        return "", 204

    return bp
