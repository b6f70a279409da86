"""The queue's Prometheus metrics, defined once: workers count outcomes, ``/metrics`` reads the depth gauges.

Depth is read from the backend when ``/metrics`` is scraped (a collector in
``arcana.edge.metrics``), not counted here, so it is right across processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# outcome: succeeded | retried | dead | released | unrouted
JOB_OUTCOMES = Counter("arcana_jobs_total", "Job attempts by outcome", ["kind", "outcome"])
JOB_SECONDS = Histogram(
    "arcana_job_seconds",
    "Time a job attempt took in its handler",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ENQUEUED = Counter("arcana_jobs_enqueued_total", "Jobs enqueued (not counting dedupe hits)", ["kind", "priority"])
