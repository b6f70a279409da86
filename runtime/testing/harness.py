"""``PluginHarness``: a plugin served by a real in-process kernel, called from plain synchronous test code.

The harness is ``arcana.testing.host.InProcessHost`` (the one `arcana plugin
call` runs on) on an event loop of its own, in a thread, so a test needs no
asyncio (and a test that runs its own loop can still use it). Everything a
call reaches is the kernel's: routing, tokens, RBAC, the envelope, the error
model, the SQLite store and the SQL queue. On top it adds what a test needs
to look at: who the caller is (``login``, ``as_user``), the store
(``store``, ``kv``: seeded and read through the store capability, on the
same database), and what the plugin did (``jobs``, ``events``, ``logs``).
Jobs and events are delivered to the plugin's handlers through the kernel's
own dispatch (``arcana.queue.dispatch``), as its worker delivers them.

    with PluginHarness("plugins/hello/hello.wasm") as h:
        assert h.get("/api/v1/hello/Ada").json() == {"message": "Hello, Ada!"}
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from arcana.config import ArcanaConfig
from arcana.database import Database
from arcana.errors import ArcanaError
from arcana.kernel import Kernel
from arcana.manifest import Manifest
from arcana.queue import policy
from arcana.queue.dispatch import Delivery, deliver, route
from arcana.queue.subscriptions import SubscriptionTable
from arcana.queue.types import Job, JobState, Priority
from arcana.queue.worker import describe
from arcana.registry import LoadedPlugin
from arcana.testing.answers import GrpcReply, JobOutcome, Response
from arcana.testing.build import plugin_file
from arcana.testing.host import Answer, InProcessHost, grpc_target, http_target
from arcana.testing.loop import LoopThread
from arcana.testing.recording import (
    EmittedEvent,
    EnqueuedJob,
    EventRecorder,
    LogRecord,
    LogRecorder,
    RecordingQueueBackend,
)
from arcana.testing.store import KvView, StoreView
from arcana.types import CallContext
from arcana_host.store.capability import Scope, StoreCapability

T = TypeVar("T")
# Who claims the queued jobs ``run_queued`` runs (the backend records a lease's holder).
WORKER = "arcana-testing"
# The source of an event ``publish`` delivers, unless the test names one ("kernel" for the kernel's own).
PUBLISHER = "test"
# Jobs ``run_queued`` takes in one go: everything waiting in a test's queue.
RUN_QUEUED_LIMIT = 1000


class NoHandler(LookupError):
    """``run_job`` named a job type the plugin declares no ``[[job]]`` for."""


class PluginHarness:
    """One plugin in a real in-process kernel (temporary SQLite store, watcher off); a context manager.

    ``path``: a built .wasm, or a plugin source folder (built once per process).
    ``grants``: None gives the plugin what its manifest requests (as `arcana plugin call`), a list those grants.
    ``config``: an operator config whose grants and limits apply instead (as `arcana serve` would apply them).
    ``db``: a SQLite file to keep the store and queue in (default: a temporary one, removed at close).
    Raises ``arcana.errors.PluginLoadError`` (every problem with its fix) when the kernel refuses the plugin.
    """

    def __init__(
        self,
        path: str | Path,
        grants: Sequence[str] | None = None,
        *,
        config: ArcanaConfig | None = None,
        db: str | Path | None = None,
    ) -> None:
        file = plugin_file(path)
        self._loop = LoopThread()
        self._host: InProcessHost | None = None
        self._database: Database | None = None
        self._store: StoreCapability | None = None
        self._logs: LogRecorder | None = None
        self._authorization = ""
        try:
            self._host = InProcessHost(file, config, Path(db) if db is not None else None, grants)
            self._plugin = self._loop.run(self._open(self._host))
        except BaseException:
            self.close()
            raise
        name = self._plugin.name
        queue = self.kernel.jobs
        self._queue = RecordingQueueBackend(queue.backend, name)
        queue.backend = self._queue  # every enqueue still lands in the kernel's own backend
        self._events = EventRecorder(name)
        self.kernel.bus.subscribe(self._events)
        self._logs = LogRecorder(name)
        self._logs.attach()
        self.store = StoreView(self._store_call)
        self.kv = KvView(self._store_call)

    @staticmethod
    async def _open(host: InProcessHost) -> LoadedPlugin:
        plugin = await host.open()
        await host.kernel.bus.flush()  # the kernel's own load events are stored before the test starts
        return plugin

    # ---- lifecycle

    @property
    def kernel(self) -> Kernel:
        """The in-process ``arcana.kernel.Kernel`` (for what the helpers do not cover)."""
        return self._live.kernel

    @property
    def plugin(self) -> str:
        """The plugin's name."""
        return self._plugin.name

    @property
    def manifest(self) -> Manifest:
        """The plugin's parsed manifest (``arcana.manifest.Manifest``)."""
        return self._plugin.manifest

    def close(self) -> None:
        """Stop the kernel and remove the temporary folder and database; a second call does nothing."""
        if self._logs is not None:  # detached, its lines kept: ``logs`` still reads them after close
            self._logs.detach()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._database is not None:
            self._database.close()
            self._database = None
        host, self._host = self._host, None
        try:
            if host is not None:
                self._loop.run(_close(host))
        finally:
            if self._loop.loop.is_running():
                self._loop.close()

    def __enter__(self) -> PluginHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._host is None:
            coro.close()
            raise RuntimeError("the harness is closed")
        return self._loop.run(coro)

    @property
    def _live(self) -> InProcessHost:
        if self._host is None:
            raise RuntimeError("the harness is closed")
        return self._host

    # ---- the principal

    def token(self, user: str, roles: Sequence[str] = ()) -> str:
        """A real access token for ``user`` with ``roles``, signed by the kernel (for an Authorization header)."""
        return self._live.token(user, roles)

    def login(self, user: str, roles: Sequence[str] = ()) -> None:
        """Make later calls as ``user`` with ``roles`` (until ``logout``; ``as_user=`` on a call wins)."""
        self._authorization = f"Bearer {self.token(user, roles)}"

    def logout(self) -> None:
        """Make later calls anonymous again."""
        self._authorization = ""

    def _authorize(self, headers: dict[str, str], as_user: str | None, roles: Sequence[str]) -> str:
        if roles and as_user is None:
            raise ValueError("roles= needs as_user=")
        if as_user is not None:
            if "authorization" in headers:
                raise ValueError("give as_user= or an Authorization header, not both")
            return f"Bearer {self.token(as_user, roles)}"
        return headers.get("authorization", self._authorization)

    # ---- HTTP

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        as_user: str | None = None,
        roles: Sequence[str] = (),
    ) -> Response:
        """One HTTP request through the kernel's router, auth and error model; ``path`` may carry ``?query``."""
        if json is not None and body is not None:
            raise ValueError("give json= or body=, not both")
        sent = {k.lower(): v for k, v in (headers or {}).items()}
        authorization = self._authorize(sent, as_user, roles)
        data = b""
        if json is not None:
            data = jsonlib.dumps(json).encode()
            sent.setdefault("content-type", "application/json")
        elif body is not None:
            data = body.encode() if isinstance(body, str) else body
            sent.setdefault("content-type", "application/json" if _is_json(data) else "text/plain; charset=utf-8")
        if data:
            sent["content-length"] = str(len(data))
        answer: Answer = self._run(self._live.http(http_target(method, path), data, sent, authorization))
        return Response(answer.status, answer.headers, answer.body)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Response:
        return self.request("DELETE", path, **kwargs)

    # ---- gRPC

    def grpc(
        self,
        method: str,
        message: dict[str, Any] | None = None,
        *,
        as_user: str | None = None,
        roles: Sequence[str] = (),
        metadata: dict[str, str] | None = None,
    ) -> GrpcReply:
        """Call ``pkg.Service/Method`` with ``message`` (proto3 JSON) as a gRPC client with the .proto would."""
        target = grpc_target(method)
        if target is None:
            raise ValueError(f"not a gRPC method: {method!r}; give 'pkg.Service/Method'")
        sent = {k.lower(): v for k, v in (metadata or {}).items()}
        authorization = self._authorize(sent, as_user, roles)
        data = jsonlib.dumps(message or {}).encode()
        answer = self._run(self._live.grpc(target, data, sent, authorization))
        decoded = jsonlib.loads(answer.body) if answer.body else {}
        if answer.grpc_status == "OK":
            return GrpcReply("OK", decoded, None)
        return GrpcReply(answer.grpc_status or "UNKNOWN", {}, decoded)

    # ---- jobs and events

    def run_job(self, type: str, payload: Any = None, *, priority: str = "normal", attempt: int = 1) -> JobOutcome:
        """Deliver a job of ``type`` to the plugin's ``[[job]]`` handler, as the kernel's worker would."""
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            type=type,
            payload=payload,
            priority=Priority.parse(priority),
            state=JobState.RUNNING,
            attempts=attempt,
            max_retries=attempt,
            run_at=now,
            created_at=now,
            updated_at=now,
        )
        delivery = route(self.kernel.registry.snapshot, job)
        if delivery is None:
            declared = sorted(j.type for j in self.manifest.jobs)
            raise NoHandler(f"plugin '{self.plugin}' has no [[job]] of type {type!r}; it declares {declared}")
        return self._run(self._deliver(delivery, job))

    def publish(
        self,
        topic: str,
        payload: dict[str, Any] | None = None,
        *,
        principal: str | None = None,
        source: str = PUBLISHER,
        id: str | None = None,
    ) -> list[JobOutcome]:
        """Deliver an event to each of the plugin's ``[[subscribe]]`` handlers whose topic matches (none: []).

        The handler gets the event object the bus makes: ``{"id", "topic", "source", "time", "payload",
        "principal"}``; ``principal`` is the user the event is about (None: none), ``source`` who emitted it,
        ``id`` the event's id (default: a fresh one; give the same twice to test a redelivery).
        """
        now = time.time()
        event = {
            "id": id or uuid.uuid4().hex,
            "topic": topic,
            "source": source,
            "time": now,
            "payload": payload or {},
            "principal": principal,
        }
        snapshot = self.kernel.registry.snapshot
        outcomes = []
        for target in SubscriptionTable([self.manifest]).targets(topic):
            job = Job(
                id=uuid.uuid4().hex,
                type=topic,
                payload=event,
                priority=Priority.NORMAL,
                state=JobState.RUNNING,
                attempts=1,
                max_retries=0,
                run_at=now,
                created_at=now,
                updated_at=now,
                target=target.name,
            )
            delivery = route(snapshot, job)
            if delivery is not None:
                outcomes.append(self._run(self._deliver(delivery, job)))
        return outcomes

    def run_queued(self) -> list[JobOutcome]:
        """Run every job waiting in the queue now (the plugin's enqueued jobs, event deliveries) once, as the
        worker does: claimed, delivered, recorded as succeeded, retried later or dead. Jobs they enqueue wait.
        """
        return self._run(self._run_queued())

    async def _run_queued(self) -> list[JobOutcome]:
        config = self.kernel.config.queue
        backend = self._queue
        leases = await asyncio.to_thread(backend.claim, WORKER, RUN_QUEUED_LIMIT, time.time(), config.lease_s)
        outcomes = []
        for lease in leases:
            delivery = route(self.kernel.registry.snapshot, lease.job)
            if delivery is None:
                why = f"no handler for {lease.job.target or lease.job.type}"
                await asyncio.to_thread(backend.release, lease, time.time(), time.time(), why)
                outcomes.append(JobOutcome(False, None, {"code": "NOT_FOUND", "message": why}, lease.job.type))
                continue
            outcome, raised = await self._attempt(delivery, lease.job)
            now = time.time()
            if raised is None:
                await asyncio.to_thread(backend.complete, lease, outcome.result, now)
            else:  # as the worker records a failed attempt: retried after its backoff, or dead
                again = policy.retry_at(lease.job, now, config)
                await asyncio.to_thread(backend.fail, lease, describe(raised), again, now)
            outcomes.append(outcome)
        return outcomes

    async def _deliver(self, delivery: Delivery, job: Job) -> JobOutcome:
        return (await self._attempt(delivery, job))[0]

    async def _attempt(self, delivery: Delivery, job: Job) -> tuple[JobOutcome, ArcanaError | None]:
        """The handler's outcome, and the error it raised in the public model (None when it succeeded)."""
        max_result = self.kernel.config.queue.max_payload_bytes
        try:
            result = await deliver(delivery, job, max_result, self.kernel.tracing)
        except ArcanaError as exc:
            error = {"code": exc.code.value, "message": exc.message}
            return JobOutcome(False, None, error, job.type, delivery.handler), exc
        return JobOutcome(True, result, None, job.type, delivery.handler), None

    @property
    def jobs(self) -> list[EnqueuedJob]:
        """Jobs the plugin enqueued (``queue_enqueue``) that have not run yet, oldest first."""
        found = []
        for job_id in self._queue.ids():
            job = self._queue.get(job_id)
            if job is not None and job.state in (JobState.QUEUED, JobState.FAILED):
                found.append(EnqueuedJob.of(job))
        return found

    @property
    def events(self) -> list[EmittedEvent]:
        """Events the plugin emitted (``event_emit``), oldest first."""
        return self._events.events()

    @property
    def logs(self) -> list[LogRecord]:
        """Lines the plugin logged (the ``log`` host function), oldest first."""
        return [] if self._logs is None else self._logs.records()

    def clear(self) -> None:
        """Forget the recorded jobs, events and log lines (the queue and store keep what they hold)."""
        self._queue.clear()
        self._events.clear()
        if self._logs is not None:
            self._logs.clear()

    # ---- the store

    def _store_call(self, function: str, req: dict[str, Any]) -> dict[str, Any]:
        """A store host function, called as the plugin would call it (same checks, same namespace)."""
        host = self._live
        if self._store is None:
            # The kernel's database, through a handle of the harness's own: seeding is no plugin call.
            self._database = Database(host.kernel.config.database)
            self._store = StoreCapability.from_config(host.kernel.config, self._database)
        call = CallContext(self.plugin, self.manifest.version, request_id="arcana-testing")
        handler = getattr(self._store, function)
        reply: dict[str, Any] = handler(Scope(self.plugin, call), req)
        return reply


# What the pytest fixture ``arcana_plugin`` is: ``arcana_plugin(path, grants=None, **options)`` -> a harness.
HarnessFactory = Callable[..., PluginHarness]


@contextmanager
def harness_factory() -> Iterator[HarnessFactory]:
    """A maker of harnesses that closes every one it made on the way out (the ``arcana_plugin`` fixture)."""
    made: list[PluginHarness] = []

    def make(path: str | Path, grants: Sequence[str] | None = None, **options: Any) -> PluginHarness:
        harness = PluginHarness(path, grants, **options)
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in reversed(made):
            harness.close()


async def _close(host: InProcessHost) -> None:
    host.close()  # on the loop: the kernel cancels its tasks there


def _is_json(data: bytes) -> bool:
    try:
        jsonlib.loads(data)
    except ValueError:
        return False
    return True


__all__ = ["HarnessFactory", "NoHandler", "PluginHarness", "harness_factory"]
