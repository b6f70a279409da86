"""Each loaded plugin's pool and threads as gauges, read from the registry's snapshot when scraped.

::

    arcana_plugin_instances_idle{plugin}       instances kept warm for the next call
    arcana_plugin_calls_in_flight{plugin}      calls holding a concurrency slot now
    arcana_plugin_concurrency_limit{plugin}    the version's max_concurrency (slots)
    arcana_plugin_threads_busy{plugin}         the plugin's threads held by calls (stuck ones included)
    arcana_plugin_threads_limit{plugin}        its share of threads (executor.max_threads_per_plugin)

Nothing is counted on the call path for these: the collector reads the pools
of the current snapshot, so an unloaded plugin's series disappear with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from arcana.registry import Snapshot


class PoolGauges:
    """A Prometheus collector over ``snapshot()`` (the kernel's registry snapshot of the moment)."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        gauges = {
            "idle": GaugeMetricFamily(
                "arcana_plugin_instances_idle", "Plugin instances idle and ready for reuse", labels=["plugin"]
            ),
            "in_flight": GaugeMetricFamily(
                "arcana_plugin_calls_in_flight", "Plugin calls holding a concurrency slot", labels=["plugin"]
            ),
            "slots": GaugeMetricFamily(
                "arcana_plugin_concurrency_limit", "A plugin's concurrency slots (max_concurrency)", labels=["plugin"]
            ),
            "busy": GaugeMetricFamily(
                "arcana_plugin_threads_busy", "A plugin's threads held by calls, stuck ones included", labels=["plugin"]
            ),
            "threads": GaugeMetricFamily(
                "arcana_plugin_threads_limit", "A plugin's share of threads", labels=["plugin"]
            ),
        }
        for name, plugin in self._snapshot().plugins.items():
            pool = plugin.pool
            gauges["idle"].add_metric([name], pool.idle)
            gauges["in_flight"].add_metric([name], pool.in_flight)
            gauges["slots"].add_metric([name], pool.limits.max_concurrency)
            gauges["busy"].add_metric([name], pool.share.busy)
            gauges["threads"].add_metric([name], pool.share.size)
        yield from gauges.values()
