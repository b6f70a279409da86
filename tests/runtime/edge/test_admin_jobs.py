"""`/api/v1/admin/jobs` in process: the REST app over a kernel whose queue is the in-memory fake backend."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from arcana.config import QueueConfig
from arcana.edge.jobs_ops import MAX_DEAD_OFFSET, MAX_DEAD_PAGE, MAX_SELECTED_IDS
from arcana.edge.rest import create_rest_app
from arcana.kernel import Kernel
from arcana.queue.jobs import JobQueue
from arcana.queue.types import JobSpec, JobState, Priority
from fakes import Kernels, bearer
from queue_fakes import OPERATOR, MemoryQueueBackend

NOW = 1_800_000_000.0
ADMIN = bearer("root", ["admin"])
Scenario = Callable[[httpx.AsyncClient], Awaitable[Any]]


@pytest.fixture
def backend() -> MemoryQueueBackend:
    return MemoryQueueBackend(OPERATOR)


@pytest.fixture
def kernel(kernels: Kernels, backend: MemoryQueueBackend, monkeypatch: pytest.MonkeyPatch) -> Kernel:
    """A started kernel whose ``jobs`` is a JobQueue on ``backend``, its clock fixed at NOW."""
    queue = JobQueue(QueueConfig(), backend, clock=lambda: NOW)
    monkeypatch.setattr(Kernel, "jobs", property(lambda _kernel: queue))
    return kernels()


def run(kernel: Kernel, scenario: Scenario) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=create_rest_app(kernel))
        async with httpx.AsyncClient(transport=transport, base_url="http://arcana.test") as client:
            return await scenario(client)

    return asyncio.run(main())


def send(kernel: Kernel, method: str, url: str, **kwargs: Any) -> httpx.Response:
    async def scenario(client: httpx.AsyncClient) -> httpx.Response:
        return await client.request(method, url, **kwargs)

    return run(kernel, scenario)


def error_of(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def events_of(kernel: Kernel) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    kernel.bus.subscribe(seen.append)
    return seen


def test_every_jobs_route_needs_an_admin(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    dead = backend.seed_dead("mail.send", "smtp down", NOW)
    routes = [
        ("GET", "/api/v1/admin/jobs", None),
        ("GET", f"/api/v1/admin/jobs/{dead}", None),
        ("GET", "/api/v1/admin/jobs/dead", None),
        ("POST", "/api/v1/admin/jobs/dead/replay", {"all": True}),
        ("POST", "/api/v1/admin/jobs/dead/purge", {"all": True}),
    ]

    async def scenario(client: httpx.AsyncClient) -> list[tuple[int, str]]:
        answers = []
        for method, url, body in routes:
            answers.append(error_of(await client.request(method, url, json=body)))
            answers.append(error_of(await client.request(method, url, json=body, headers=bearer("u", ["user"]))))
        return answers

    assert run(kernel, scenario) == [(401, "UNAUTHORIZED"), (403, "FORBIDDEN")] * len(routes)
    assert backend.jobs[dead].state == JobState.DEAD, "a refused replay or purge changed nothing"
    assert backend.call_log == ["enqueue"], "the backend is not asked before the caller is admitted"


def test_stats_counts_ready_per_priority_delayed_running_and_dead(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    for priority in (Priority.HIGH, Priority.HIGH, Priority.LOW):
        backend.enqueue(JobSpec("t", priority=priority), NOW - 1)
    backend.enqueue(JobSpec("t", run_at=NOW + 60), NOW)
    backend.set_state(backend.enqueue(JobSpec("t"), NOW).id, JobState.RUNNING)
    backend.seed_dead("t", "boom", NOW)

    response = send(kernel, "GET", "/api/v1/admin/jobs", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {
        "ready": {"critical": 0, "high": 2, "normal": 0, "low": 1},
        "delayed": 1,
        "running": 1,
        "dead": 1,
        "succeeded": 0,
    }


def test_a_job_is_shown_by_id_and_an_unknown_or_impossible_id_is_refused(
    kernel: Kernel, backend: MemoryQueueBackend
) -> None:
    dead = backend.seed_dead("mail.send", "smtp down", NOW)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.get(f"/api/v1/admin/jobs/{dead}", headers=ADMIN),
            await client.get("/api/v1/admin/jobs/job-404", headers=ADMIN),
            await client.get(f"/api/v1/admin/jobs/{'x' * 129}", headers=ADMIN),
        ]

    found, missing, impossible = run(kernel, scenario)
    assert found.status_code == 200
    assert found.json() == backend.jobs[dead].as_json()
    assert (found.json()["state"], found.json()["error"]) == ("dead", "smtp down")
    assert error_of(missing) == (404, "NOT_FOUND")
    assert error_of(impossible) == (400, "VALIDATION_FAILED")


def test_dead_letters_are_paged_most_recently_dead_first(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    ids = [backend.seed_dead("t", f"error {n}", NOW - 100 + n) for n in range(5)]

    async def scenario(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        pages = ["", "?limit=2", "?limit=2&offset=2", f"?limit={MAX_DEAD_PAGE}&offset=4"]
        return [(await client.get(f"/api/v1/admin/jobs/dead{q}", headers=ADMIN)).json() for q in pages]

    everything, first, second, last = run(kernel, scenario)
    newest_first = ids[::-1]
    assert [j["id"] for j in everything["items"]] == newest_first
    assert (everything["limit"], everything["offset"]) == (50, 0)
    assert [j["id"] for j in first["items"]] == newest_first[:2]
    assert [j["id"] for j in second["items"]] == newest_first[2:4]
    assert [j["id"] for j in last["items"]] == newest_first[4:]
    assert everything["items"][0]["error"] == "error 4"


@pytest.mark.parametrize(
    "query",
    ["limit=0", f"limit={MAX_DEAD_PAGE + 1}", "limit=abc", "limit=-1", "limit=", "offset=-5",
     f"offset={MAX_DEAD_OFFSET + 1}", "offset=1.5", f"limit={'9' * 40}"],
)  # fmt: skip
def test_a_dead_letter_page_out_of_bounds_is_400(kernel: Kernel, backend: MemoryQueueBackend, query: str) -> None:
    response = send(kernel, "GET", f"/api/v1/admin/jobs/dead?{query}", headers=ADMIN)
    assert error_of(response) == (400, "VALIDATION_FAILED")
    assert "dead" not in backend.call_log


def test_replay_by_ids_queues_those_jobs_again_with_attempts_reset_and_emits_an_event(
    kernel: Kernel, backend: MemoryQueueBackend
) -> None:
    first, second, third = (backend.seed_dead("t", "boom", NOW - n) for n in range(3))
    events = events_of(kernel)

    body = {"ids": [first, third, "job-unknown", first]}
    response = send(kernel, "POST", "/api/v1/admin/jobs/dead/replay", json=body, headers=ADMIN)
    assert response.status_code == 200 and response.json() == {"replayed": 2}
    assert [(backend.jobs[i].state, backend.jobs[i].attempts) for i in (first, second, third)] == [
        (JobState.QUEUED, 0),
        (JobState.DEAD, 4),
        (JobState.QUEUED, 0),
    ]
    [event] = [e for e in events if e["topic"] == "admin.jobs_replayed"]
    assert event["payload"] == {"user_id": "root", "count": 2, "ids": [first, third, "job-unknown"]}


def test_replay_all_and_purge_all_take_every_dead_job(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    for n in range(3):
        backend.seed_dead("t", "boom", NOW - n)
    alive = backend.enqueue(JobSpec("t"), NOW).id
    events = events_of(kernel)

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        replayed = await client.post("/api/v1/admin/jobs/dead/replay", json={"all": True}, headers=ADMIN)
        backend.seed_dead("t", "boom again", NOW)
        backend.seed_dead("t", "boom again", NOW)
        purged = await client.post("/api/v1/admin/jobs/dead/purge", json={"all": True}, headers=ADMIN)
        return [replayed, purged]

    replayed, purged = run(kernel, scenario)
    assert replayed.json() == {"replayed": 3} and purged.json() == {"purged": 2}
    assert sum(j.state == JobState.QUEUED for j in backend.jobs.values()) == 4 and alive in backend.jobs
    assert not any(j.state == JobState.DEAD for j in backend.jobs.values())
    assert [(e["topic"], e["payload"]["count"], e["payload"]["ids"]) for e in events] == [
        ("admin.jobs_replayed", 3, None),
        ("admin.jobs_purged", 2, None),
    ]


def test_purge_by_ids_deletes_only_those_dead_jobs(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    keep, drop = backend.seed_dead("t", "a", NOW), backend.seed_dead("t", "b", NOW)
    queued = backend.enqueue(JobSpec("t"), NOW).id
    events = events_of(kernel)

    body = {"ids": [drop, queued]}
    response = send(kernel, "POST", "/api/v1/admin/jobs/dead/purge", json=body, headers=ADMIN)
    assert response.json() == {"purged": 1}
    assert set(backend.jobs) == {keep, queued}, "a job that is not dead is never purged"
    assert [e["payload"] for e in events] == [{"user_id": "root", "count": 1, "ids": [drop, queued]}]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": []},
        {"all": False},
        {"all": True, "ids": ["job-1"]},
        {"all": "yes"},
        {"ids": "job-1"},
        {"ids": [1]},
        {"ids": [""]},
        {"ids": ["has space"]},
        {"ids": ["x" * 129]},
        {"ids": ["job-1"], "filter": "x"},
        {"ids": [f"job-{n}" for n in range(MAX_SELECTED_IDS + 1)]},
        ["job-1"],
    ],
)
@pytest.mark.parametrize("action", ["replay", "purge"])
def test_a_bad_selection_is_400_and_touches_nothing(
    kernel: Kernel, backend: MemoryQueueBackend, body: Any, action: str
) -> None:
    backend.seed_dead("t", "boom", NOW)
    response = send(kernel, "POST", f"/api/v1/admin/jobs/dead/{action}", json=body, headers=ADMIN)
    assert error_of(response) == (400, "VALIDATION_FAILED")
    assert backend.call_log == ["enqueue"]


def test_a_body_that_is_not_json_is_400(kernel: Kernel) -> None:
    response = send(kernel, "POST", "/api/v1/admin/jobs/dead/replay", content=b"{all: true", headers=ADMIN)
    assert error_of(response) == (400, "VALIDATION_FAILED")


def test_the_largest_selection_allowed_is_accepted(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    ids = [backend.seed_dead("t", "boom", NOW)] + [f"job-x{n}" for n in range(MAX_SELECTED_IDS - 1)]
    response = send(kernel, "POST", "/api/v1/admin/jobs/dead/purge", json={"ids": ids}, headers=ADMIN)
    assert response.json() == {"purged": 1}


def test_a_backend_that_is_down_is_503_with_retry_after(kernel: Kernel, backend: MemoryQueueBackend) -> None:
    backend.down = True

    async def scenario(client: httpx.AsyncClient) -> list[httpx.Response]:
        return [
            await client.get("/api/v1/admin/jobs", headers=ADMIN),
            await client.get("/api/v1/admin/jobs/job-1", headers=ADMIN),
            await client.post("/api/v1/admin/jobs/dead/replay", json={"all": True}, headers=ADMIN),
        ]

    for response in run(kernel, scenario):
        assert error_of(response) == (503, "SERVICE_UNAVAILABLE")
        assert response.headers["retry-after"] == "2"
