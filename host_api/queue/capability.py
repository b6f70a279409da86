"""The ``queue`` capability: enqueue the plugin's own job types, read its own jobs.

Host functions (JSON in, JSON out):

    queue_enqueue {type, payload?, priority?, delay_ms?, max_retries?, dedupe_key?} -> {id, created}
    queue_status  {id}                                                              -> {job}

``type`` must be one of the calling plugin's ``[[job]]`` types, or one the
operator grants it under ``capabilities.queue.extra_types`` (else
FORBIDDEN). ``priority`` is critical, high, normal (default) or low;
``delay_ms`` defers the first run; ``max_retries`` defaults to
``queue.default_max_retries``; a ``dedupe_key`` still held by one of the
plugin's stored jobs returns that job (``created: false``) instead of a new
one. Dedupe keys are the plugin's own: another plugin's key never matches.
``queue_status`` shows only jobs the plugin enqueued; any other id is
NOT_FOUND, exactly like a missing one. Bounds come from the ``queue:``
section (VALIDATION_FAILED, PAYLOAD_TOO_LARGE), and one plugin call may
enqueue and emit at most ``queue.max_enqueues_per_call`` times (RATE_LIMITED).
Grant: ``queue = true`` in the manifest and ``queue`` in the operator's grants.

    [capabilities]
    queue = true

    [[job]]
    type = "notes.reindex"
    handler = "reindex"
"""

from __future__ import annotations

from dataclasses import dataclass

from arcana.config import ArcanaConfig
from arcana.errors import Forbidden, NotFound, ServiceUnavailable, ValidationFailed
from arcana.queue.jobs import JobQueue
from arcana.types import CallContext, HostFunction, JsonObject, PluginSpec
from arcana_host.queue import requests as parse
from arcana_host.queue.budget import CallBudget
from arcana_host.queue.config import QueueCapabilityConfig


@dataclass(frozen=True, slots=True)
class Allowed:
    """Per plugin: its name (the owner of what it enqueues) and the job types it may enqueue."""

    plugin: str
    types: frozenset[str]


@dataclass(frozen=True, slots=True)
class Scope:
    """Per call: the plugin's allowance, the call (its trace context), and the call's enqueue budget."""

    allowed: Allowed
    call: CallContext
    budget: CallBudget


def dedupe_key(plugin: str, key: str) -> str:
    """The stored key: namespaced, so a plugin can neither find nor pre-empt another's (or the kernel's) jobs."""
    return f"plugin:{plugin}:{key}"


class QueueCapability:
    name = "queue"

    def __init__(self, config: ArcanaConfig, jobs: JobQueue | None) -> None:
        self.config = config.section("queue", QueueCapabilityConfig)
        self.limit = config.queue.max_enqueues_per_call
        self.max_dedupe_bytes = config.queue.max_dedupe_key_bytes
        self._jobs = jobs

    @classmethod
    def from_config(cls, config: ArcanaConfig, jobs: JobQueue | None) -> QueueCapability:
        """On the kernel's queue; without one (``arcana plugin check``) it only validates."""
        return cls(config, jobs)

    @property
    def jobs(self) -> JobQueue:
        if self._jobs is None:
            raise ServiceUnavailable("the job queue is not available in this process")
        return self._jobs

    def configure(self, plugin: PluginSpec) -> Allowed:
        own = {job.type for job in plugin.manifest.jobs}
        return Allowed(plugin.name, frozenset(own | set(self.config.extra_types.get(plugin.name, ()))))

    def prepare(self, allowed: Allowed, call: CallContext) -> Scope:
        return Scope(allowed, call, CallBudget.of(call, self.limit))

    def close(self) -> None:
        return None  # the queue is the kernel's; it closes it

    def queue_enqueue(self, scope: Scope, req: JsonObject) -> JsonObject:
        r = parse.enqueue(req)
        if r.type not in scope.allowed.types:
            raise Forbidden(
                f"plugin '{scope.allowed.plugin}' may not enqueue job type '{r.type[:100]}': it is not one of its "
                "[[job]] types nor granted under capabilities.queue.extra_types"
            )
        spec = self.jobs.spec(
            r.type,
            r.payload,
            priority=r.priority,
            delay_ms=r.delay_ms,
            max_retries=r.max_retries,
            dedupe_key=None if r.dedupe_key is None else self._dedupe_key(scope.allowed.plugin, r.dedupe_key),
            owner=scope.allowed.plugin,
            traceparent=scope.call.traceparent,
        )
        scope.budget.spend("queue_enqueue")
        scope.call.may_have_saved = True
        done = self.jobs.enqueue(spec)
        return {"id": done.id, "created": done.created}

    def _dedupe_key(self, plugin: str, key: str) -> str:
        stored = dedupe_key(plugin, key)
        room = self.max_dedupe_bytes - (len(stored.encode()) - len(key.encode()))
        if not key or len(stored.encode()) > self.max_dedupe_bytes:
            raise ValidationFailed(
                f"dedupe_key must be 1-{room} bytes for plugin '{plugin}' (queue.max_dedupe_key_bytes)"
            )
        return stored

    def queue_status(self, scope: Scope, req: JsonObject) -> JsonObject:
        job_id = parse.job_id(req)
        job = self.jobs.get(job_id)
        # Someone else's job answers exactly like a missing one: ids are not a way to probe other plugins.
        if job is None or job.owner != scope.allowed.plugin:
            raise NotFound(f"no job '{job_id}' enqueued by plugin '{scope.allowed.plugin}'")
        return {"job": job.as_json()}

    functions = (
        HostFunction("queue_enqueue", "queue", queue_enqueue),
        HostFunction("queue_status", "queue", queue_status),
    )
