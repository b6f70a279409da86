"""`/api/v1/admin/jobs`: queue stats, one job, the dead letters, replay and purge (role admin).

    GET  /api/v1/admin/jobs                      stats
    GET  /api/v1/admin/jobs/dead?limit=&offset=  dead jobs, most recently dead first
    POST /api/v1/admin/jobs/dead/replay          {"ids": [...]} or {"all": true} -> {"replayed": n}
    POST /api/v1/admin/jobs/dead/purge           {"ids": [...]} or {"all": true} -> {"purged": n}
    GET  /api/v1/admin/jobs/<id>                 one job, any state

Purge is a POST with a body, like replay, rather than a DELETE: proxies and
clients may drop a DELETE's body, and a purge that lost its ``ids`` must not
turn into something else.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Blueprint, request

from arcana.core import require_role
from arcana.edge.jobs_ops import JobsAdmin, selection
from arcana.edge.users import json_object
from arcana.errors import ValidationFailed
from arcana.kernel import Kernel
from arcana.types import Principal

# ASCII digits, and few of them (as for the user listing's page numbers); the range is checked by the core.
_DIGITS = re.compile(r"[0-9]{1,18}")


def _query_int(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not _DIGITS.fullmatch(raw):
        raise ValidationFailed(f"query parameter '{name}' must be a non-negative integer")
    return int(raw)


def register_jobs_admin(bp: Blueprint, kernel: Kernel) -> None:
    jobs = JobsAdmin(kernel)

    def admin() -> Principal:
        # The blueprint's before_request already refused non-admins; this names who acts, for the event.
        return require_role(kernel.authenticate(request.headers.get("authorization", "")), ("admin",))

    @bp.get("/jobs")
    async def queue_stats() -> Any:
        return await jobs.stats()

    @bp.get("/jobs/dead")
    async def dead_jobs() -> Any:
        return await jobs.dead(_query_int("limit"), _query_int("offset"))

    @bp.post("/jobs/dead/replay")
    async def replay_dead() -> Any:
        return {"replayed": await jobs.replay(selection(await json_object()), admin())}

    @bp.post("/jobs/dead/purge")
    async def purge_dead() -> Any:
        return {"purged": await jobs.purge(selection(await json_object()), admin())}

    @bp.get("/jobs/<job_id>")
    async def get_job(job_id: str) -> Any:
        return await jobs.job(job_id)
