"""The operator's queue actions, one transport-agnostic core under the REST and gRPC admin edges.

Both edges parse their request into plain values, call ``JobsAdmin`` and
serialize what it returns; the checks on what an operator may ask for (page
bounds, which dead jobs to replay or purge) live here once. Queue calls
block, so each runs on a thread, off the event loop.

Replays and purges are kernel events (payloads never hold job payloads)::

    admin.jobs_replayed   {"user_id", "count", "ids"}   ids: the ids asked for, or null for "all"
    admin.jobs_purged     {"user_id", "count", "ids"}
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arcana.errors import NotFound, ValidationFailed
from arcana.types import Principal

if TYPE_CHECKING:  # the CLI uses this module's checks, and has no kernel to import
    from arcana.kernel import Kernel

ADMIN_JOBS_REPLAYED = "admin.jobs_replayed"
ADMIN_JOBS_PURGED = "admin.jobs_purged"
# A dead-letter page: an operator's look, not an export (the backend reads the whole page in one go).
DEFAULT_DEAD_PAGE = 50
MAX_DEAD_PAGE = 500
# Deeper than this, purge or replay the front first: an offset scan is work the backend does per request.
MAX_DEAD_OFFSET = 1_000_000
# Ids in one replay or purge; "all" has no list and no bound (the backend does it in one statement or script).
MAX_SELECTED_IDS = 1000
# Ids are the backends' own (uuid hex today); anything longer cannot be one of them.
MAX_JOB_ID_CHARS = 128


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead jobs an action applies to: these ids, or every dead job when ``ids`` is None."""

    ids: tuple[str, ...] | None


def job_id(value: object) -> str:
    """A job id as the backends make them: a non-empty string without spaces, at most MAX_JOB_ID_CHARS."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_JOB_ID_CHARS or not value.isprintable():
        raise ValidationFailed(f"a job id is a string of 1-{MAX_JOB_ID_CHARS} printable characters")
    if " " in value:
        raise ValidationFailed("a job id has no spaces")
    return value


def selection(body: Mapping[str, Any]) -> Selection:
    """``{"ids": [...]}`` or ``{"all": true}``, exactly one of them; ValidationFailed naming the rule otherwise."""
    unknown = set(body) - {"ids", "all"}
    if unknown:
        raise ValidationFailed(f"unknown field(s): {', '.join(sorted(unknown))}; give 'ids' or 'all'")
    every, ids = body.get("all", False), body.get("ids")
    if not isinstance(every, bool):
        raise ValidationFailed("'all' must be true or false")
    if every == (ids is not None and ids != []):
        raise ValidationFailed("give either 'ids' (a non-empty list of job ids) or 'all': true")
    if every:
        return Selection(None)
    if not isinstance(ids, list):
        raise ValidationFailed("'ids' must be a list of job ids")
    if len(ids) > MAX_SELECTED_IDS:
        raise ValidationFailed(f"at most {MAX_SELECTED_IDS} ids at once; use 'all': true or several requests")
    return Selection(tuple(dict.fromkeys(job_id(i) for i in ids)))


def page(limit: int | None, offset: int | None) -> tuple[int, int]:
    """A dead-letter page: limit 1-MAX_DEAD_PAGE (DEFAULT_DEAD_PAGE when not given), offset 0-MAX_DEAD_OFFSET."""
    limit = DEFAULT_DEAD_PAGE if limit is None else limit
    offset = 0 if offset is None else offset
    if not 1 <= limit <= MAX_DEAD_PAGE:
        raise ValidationFailed(f"limit must be an integer 1-{MAX_DEAD_PAGE}")
    if not 0 <= offset <= MAX_DEAD_OFFSET:
        raise ValidationFailed(f"offset must be an integer 0-{MAX_DEAD_OFFSET}")
    return limit, offset


class JobsAdmin:
    """Stats, one job, the dead letters, replay and purge; every answer as the JSON the REST edge returns."""

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    async def stats(self) -> dict[str, Any]:
        return (await asyncio.to_thread(self._kernel.jobs.stats)).as_json()

    async def job(self, wanted: str) -> dict[str, Any]:
        found = await asyncio.to_thread(self._kernel.jobs.get, job_id(wanted))
        if found is None:
            raise NotFound(f"no job {wanted}")
        return found.as_json()

    async def dead(self, limit: int | None, offset: int | None) -> dict[str, Any]:
        limit, offset = page(limit, offset)
        jobs = await asyncio.to_thread(self._kernel.jobs.dead, limit, offset)
        return {"items": [j.as_json() for j in jobs], "limit": limit, "offset": offset}

    async def replay(self, chosen: Selection, by: Principal) -> int:
        count = await asyncio.to_thread(self._kernel.jobs.replay, chosen.ids)
        self._emit(ADMIN_JOBS_REPLAYED, chosen, count, by)
        return count

    async def purge(self, chosen: Selection, by: Principal) -> int:
        count = await asyncio.to_thread(self._kernel.jobs.purge, chosen.ids)
        self._emit(ADMIN_JOBS_PURGED, chosen, count, by)
        return count

    def _emit(self, topic: str, chosen: Selection, count: int, by: Principal) -> None:
        ids = None if chosen.ids is None else list(chosen.ids)
        self._kernel.bus.emit(topic, {"user_id": by.sub, "count": count, "ids": ids}, principal=by.sub)
