"""The event bus: one interface every kernel part, and every plugin's ``event_emit``, emits through.

Named kernel events and their payloads (never secrets, hashes or tokens)::

    auth.login                  {"user_id", "email", "address"}          principal: the user
    auth.login_failed           {"email", "address", "reason"}
                                reason: credentials | rate_limited | disabled | deadline
    auth.logout                 {"user_id"}                               principal: the user
    auth.token_reuse_detected   {"user_id"}                               principal: the token's user
                                the family and the user's access tokens are revoked
    admin.user_changed          {"user_id", "change"}            change: created | roles | disabled | enabled | deleted
    plugin.loaded               {"plugin", "version"}
    plugin.failed               {"plugin", "source", "problems"}  plugin: null when the file named none
    plugin.unloaded             {"plugin"}
    breaker.opened              {"kind", "name", "old", "new"}   kind: plugin | backend | http
    breaker.half_opened         {"kind", "name", "old", "new"}   (arcana.resilience; old and new are
    breaker.closed              {"kind", "name", "old", "new"}    closed | open | half_open)

An emitted event is the JSON object ``{"id", "topic", "source", "time",
"payload", "principal"}``. ``emit`` logs it, hands it to in-process
listeners, and enqueues one delivery job per matching ``[[subscribe]]``
handler (``arcana.queue.subscriptions``): ``type`` the topic, ``payload`` the
event, ``target`` ``"plugin/handler"``, deduped per event and handler, so the
worker delivers it at least once, with retries and a dead letter::

    bus = EventBus(jobs)
    bus.use(SubscriptionTable(manifests))       # on every registry change
    bus.emit("note.created", {"id": "n-1"}, source="notes", principal="u-1")

Emitting never fails because of delivery: a listener that raises, or a queue
that is down, is logged with the event id and the emitter carries on (a
login must not fail because the queue is). Only a payload the queue cannot
store (not JSON, over ``queue.max_payload_bytes``) for an event with
subscribers raises, before anything is logged or delivered: that is the
emitter's mistake (``event_emit`` checks the bound itself, for every event).

Threads: ``emit`` is called from worker threads (auth runs off the event
loop, plugins emit from their call threads) and from the loop itself. Off
the loop it stores the deliveries before returning; on the loop it must not
block, so it hands the store to the default executor (``flush`` awaits those).
The listeners and the table are immutable values replaced whole, so a
concurrent ``use`` or ``subscribe`` is seen entirely or not at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from arcana.manifest import Manifest
from arcana.queue.jobs import JobQueue
from arcana.queue.subscriptions import SubscriptionTable
from arcana.queue.types import KERNEL_OWNER, JobSpec

AUTH_LOGIN = "auth.login"
AUTH_LOGIN_FAILED = "auth.login_failed"
AUTH_LOGOUT = "auth.logout"
AUTH_TOKEN_REUSE = "auth.token_reuse_detected"
ADMIN_USER_CHANGED = "admin.user_changed"
PLUGIN_LOADED = "plugin.loaded"
PLUGIN_FAILED = "plugin.failed"
PLUGIN_UNLOADED = "plugin.unloaded"

logger = logging.getLogger("arcana.events")
Listener = Callable[[dict[str, Any]], None]
# The queue, or a way to get it when the first delivery needs it (the kernel opens its queue lazily).
JobsSource = JobQueue | Callable[[], JobQueue]


class EventBus:
    def __init__(self, jobs: JobsSource | None = None) -> None:
        # None: events are logged and given to listeners only (the CLI's one-off commands).
        self._jobs = jobs
        self._listeners: tuple[Listener, ...] = ()
        self._table = SubscriptionTable()
        self._pending: set[asyncio.Future[None]] = set()
        # Writers only: emit reads the current tuple and table without it.
        self._lock = threading.Lock()

    def connect(self, jobs: JobsSource | None) -> None:
        """Deliver through ``jobs`` from now on (the kernel opens its queue after making the bus).

        A callable is asked for the queue only when an event has subscribers,
        so a process whose plugins subscribe to nothing never opens one.
        """
        self._jobs = jobs

    def use(self, table: SubscriptionTable) -> None:
        """Fan out to ``table``'s handlers from the next emit on."""
        self._table = table

    def use_manifests(self, manifests: Iterable[Manifest]) -> None:
        """Fan out to these plugins' ``[[subscribe]]`` handlers from the next emit on."""
        self.use(SubscriptionTable(manifests))

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(event)`` in process on every emit, on the emitter's thread; it must not block."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def emit(
        self,
        topic: str,
        payload: dict[str, Any],
        *,
        source: str = KERNEL_OWNER,
        principal: str | None = None,
        traceparent: str = "",
    ) -> None:
        """Log, tell the listeners, enqueue the deliveries; raises only for a payload the queue refuses."""
        event_id = uuid.uuid4().hex
        event = {
            "id": event_id,
            "topic": topic,
            "source": source,
            "time": time.time(),
            "payload": payload,
            "principal": principal,
        }
        targets = self._table.targets(topic)
        jobs = self._queue(event_id) if targets else None
        # Checked first: a payload the queue would refuse raises before anyone has seen the event.
        spec = None if jobs is None else jobs.spec(topic, event, owner=source, traceparent=traceparent)
        logger.info("event %s", topic, extra={"event": event})
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # one bad listener must not stop the others or the emitter
                logger.exception("event listener failed for %s", topic, extra={"event_id": event_id})
        if jobs is None or spec is None:
            return
        specs = [dataclasses.replace(spec, target=t.name, dedupe_key=f"event:{event_id}:{t.name}") for t in targets]
        self._store(jobs, specs, event_id)

    def _queue(self, event_id: str) -> JobQueue | None:
        source = self._jobs
        if source is None or isinstance(source, JobQueue):
            return source
        try:
            return source()
        except Exception as exc:  # noqa: BLE001 -- a queue that cannot open is a delivery failure: logged, not raised
            logger.error("event %s not delivered: the queue cannot be opened: %s", event_id, exc)
            return None

    def _store(self, jobs: JobQueue, specs: Sequence[JobSpec], event_id: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: it can wait for the store
            _enqueue(jobs, specs, event_id)
            return
        future = loop.run_in_executor(None, _enqueue, jobs, specs, event_id)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait for the deliveries emitted on the event loop to be stored (shutdown, tests)."""
        while self._pending:
            await asyncio.gather(*self._pending)


def _enqueue(jobs: JobQueue, specs: Sequence[JobSpec], event_id: str) -> None:
    try:
        jobs.enqueue_many(specs)
    except Exception as exc:  # noqa: BLE001 -- delivery must never fail the emitter; the log names the event
        logger.error(
            "event %s not delivered to %s: %s",
            event_id,
            ", ".join(s.target for s in specs),
            exc,
            extra={"event_id": event_id, "topic": specs[0].type},
        )
