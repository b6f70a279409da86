"""`/api/v1/admin/users`: list (paged), create, update roles / disable / password, delete."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from quart import Blueprint, request

from arcana.errors import ValidationFailed
from arcana.jsonio import client_json
from arcana.kernel import Kernel

MAX_PAGE_SIZE = 100
# ASCII digits only, and few of them: str.isdigit() also accepts "²" and
# other digits that int() refuses, and int() refuses over 4,300 digits.
_DIGITS = re.compile(r"[0-9]{1,18}")


async def json_object() -> dict[str, Any]:
    """The request body as a JSON object, parsed strictly (Quart's get_json raised on bad UTF-8 and deep nesting)."""
    body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    data = client_json(body, request.headers.get("content-encoding", ""))
    if not isinstance(data, dict):
        raise ValidationFailed("the request body must be a JSON object")
    return data


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ValidationFailed(f"query parameter '{name}' must be an integer {low}-{high}")
    return int(raw)


def register_user_admin(bp: Blueprint, kernel: Kernel) -> None:
    # Argon2 and the database are blocking: keep them off the event loop.
    run = asyncio.to_thread

    @bp.get("/users")
    async def list_users() -> Any:
        page, size = _int_arg("page", 1, 1, 1_000_000), _int_arg("size", 20, 1, MAX_PAGE_SIZE)
        users, total = await run(kernel.identity.list_users, page, size)
        return {"items": [u.public() for u in users], "total": total, "page": page, "size": size}

    @bp.post("/users")
    async def create_user() -> Any:
        body = await json_object()
        user = await run(
            kernel.identity.create_user, str(body.get("email", "")), body.get("password"), body.get("roles", [])
        )
        return user.public(), 201

    @bp.get("/users/<user_id>")
    async def get_user(user_id: str) -> Any:
        return (await run(kernel.identity.get_user, user_id)).public()

    @bp.patch("/users/<user_id>")
    async def update_user(user_id: str) -> Any:
        return (await run(kernel.identity.update_user, user_id, await json_object())).public()

    @bp.delete("/users/<user_id>")
    async def delete_user(user_id: str) -> Any:
        await run(kernel.identity.delete_user, user_id)
        return "", 204
