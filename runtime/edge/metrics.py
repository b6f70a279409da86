"""/metrics: who may read it (a scrape token, an admin, or anyone when configured so) and the queue's depth.

The metrics name every plugin, route outcome and latency, so they are not
for anyone who can reach the port. Two credentials open them, each a
``Authorization: Bearer ...`` header:

- the scrape token: the value of the environment variable named by
  ``server.metrics_token_env`` (``ARCANA_METRICS_TOKEN`` by default), at least
  32 bytes; unset means no scrape token. Prometheus sends it with
  ``authorization: {type: Bearer, credentials_file: /path/to/token}`` (or the
  older ``bearer_token_file``) in the scrape config;
- an access token (JWT) of a user with the admin role.

``server.metrics_public: true`` drops the check, for a port only a trusted
network can reach.

The queue's depth is read from the backend on scrape (``QueueDepth``), so it
is right whichever processes enqueue and run jobs::

    arcana_queue_ready{priority}   jobs runnable now, per priority
    arcana_queue_delayed           queued or failed jobs waiting for their run_at
    arcana_queue_running           leased jobs
    arcana_queue_dead              the dead-letter queue
    arcana_queue_stats_up          1 when the depth above was read, 0 when the backend did not answer

``kernel_registry`` holds these and the plugin pool gauges (``arcana.edge.pool_metrics``), one
registry per kernel beside the process registry; README "Metrics" lists every family.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from arcana.config import ServerConfig
from arcana.core import require_role
from arcana.edge.pool_metrics import PoolGauges
from arcana.errors import ConfigError
from arcana.queue.types import Priority, QueueStats
from arcana.registry import Snapshot
from arcana.types import Principal

logger = logging.getLogger("arcana.metrics")
MIN_TOKEN_BYTES = 32
# A scrape waits this long for the queue's stats, then answers without them: a dead backend must
# not make /metrics hang (and lose every other metric with it).
QUEUE_STATS_TIMEOUT_S = 2.0
# Scrapes within this long of a read share it: several Prometheus servers, or a burst of
# scrapes, cost the backend one count.
QUEUE_STATS_CACHE_S = 5.0


def metrics_token(server: ServerConfig, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The scrape token from the environment, None when unset; ConfigError when too short to be a secret."""
    env = os.environ if environ is None else environ
    token = env.get(server.metrics_token_env, "")
    if not token:
        return None
    if len(token.encode()) < MIN_TOKEN_BYTES:
        raise ConfigError(
            f"server: the metrics token in ${server.metrics_token_env} is shorter than {MIN_TOKEN_BYTES} bytes; "
            "set a longer one (e.g. `openssl rand -hex 32`) or unset it"
        )
    return token.encode()


def check_metrics_token(server: ServerConfig) -> None:
    """Made before binding, so a weak token stops start-up with its one-line reason (exit code of a config error)."""
    metrics_token(server)


class MetricsAccess:
    def __init__(
        self,
        server: ServerConfig,
        authenticate: Callable[[str], Principal | None],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._public = server.metrics_public
        self._token = metrics_token(server, environ)
        self._authenticate = authenticate

    def check(self, authorization: str) -> None:
        """Return when the caller may read the metrics; else raise Unauthorized (401) or Forbidden (403)."""
        if self._public:
            return
        scheme, _, credential = authorization.partition(" ")
        if (
            self._token is not None
            and scheme.lower() == "bearer"
            and hmac.compare_digest(credential.strip().encode(), self._token)
        ):
            return
        require_role(self._authenticate(authorization), ("admin",))


class QueueDepth:
    """A Prometheus collector of the queue's depth, read through ``stats`` when scraped.

    A read that fails or outlasts ``timeout_s`` gives ``arcana_queue_stats_up 0``
    and no depth gauges (a stale number would look like a healthy queue). At
    most one read runs at a time: a read stuck on a dead backend is waited on
    again by the next scrape, never joined by more threads, and it runs on a
    daemon thread so that it cannot hold up the process's exit.
    """

    def __init__(
        self,
        stats: Callable[[], QueueStats],
        timeout_s: float = QUEUE_STATS_TIMEOUT_S,
        cache_s: float = QUEUE_STATS_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stats = stats
        self._timeout_s = timeout_s
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: Future[QueueStats] | None = None
        self._last: tuple[float, QueueStats | None] | None = None

    def read(self) -> QueueStats | None:
        """The queue's stats, from the cache or the backend; None when the backend did not answer in time."""
        with self._lock:
            if self._last is not None and self._clock() - self._last[0] < self._cache_s:
                return self._last[1]
            if self._pending is None or self._pending.done():
                self._pending = self._start()
            pending = self._pending
        try:
            stats: QueueStats | None = pending.result(timeout=self._timeout_s)
        except TimeoutError:
            stats = None
            logger.warning("queue stats did not answer within %g s; /metrics shows no queue depth", self._timeout_s)
        except Exception as exc:  # noqa: BLE001  ServiceUnavailable, or a backend not open: the scrape goes on
            stats = None
            logger.warning("queue stats unavailable: %s", exc)
        with self._lock:
            self._last = (self._clock(), stats)
        return stats

    def _start(self) -> Future[QueueStats]:
        future: Future[QueueStats] = Future()

        def run() -> None:
            try:
                future.set_result(self._stats())
            except BaseException as exc:  # noqa: BLE001  handed to the waiting scrape, which logs it
                future.set_exception(exc)

        threading.Thread(target=run, name="arcana-queue-stats", daemon=True).start()
        return future

    def collect(self) -> Iterator[Metric]:
        stats = self.read()
        yield GaugeMetricFamily(
            "arcana_queue_stats_up", "1 when the queue's depth was read from its backend", value=stats is not None
        )
        if stats is None:
            return
        ready = GaugeMetricFamily("arcana_queue_ready", "Jobs runnable now, per priority", labels=["priority"])
        for priority in Priority:
            ready.add_metric([priority.label], stats.ready.get(priority, 0))
        yield ready
        yield GaugeMetricFamily("arcana_queue_delayed", "Jobs waiting for their run_at", value=stats.delayed)
        yield GaugeMetricFamily("arcana_queue_running", "Jobs leased to a worker", value=stats.running)
        yield GaugeMetricFamily("arcana_queue_dead", "Jobs in the dead-letter queue", value=stats.dead)


def kernel_registry(stats: Callable[[], QueueStats], snapshot: Callable[[], Snapshot]) -> CollectorRegistry:
    """A registry of one kernel's gauges read on scrape (queue depth, plugin pools), kept beside the process
    registry: one per kernel, never global."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueDepth(stats))
    registry.register(PoolGauges(snapshot))
    return registry


def exposition(*extra: CollectorRegistry) -> bytes:
    """The process registry, then ``extra``, in the text format; blocking (queue reads): call it off the loop."""
    return b"".join(generate_latest(r) for r in (REGISTRY, *extra))
