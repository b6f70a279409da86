"""``capabilities.queue`` in the operator's config: job types a plugin may enqueue beyond its own.

    capabilities:
      queue:
        extra_types:
          billing: [mail.send]     # billing may enqueue mail's job type

Bounds (payload size, delay, retries, enqueues per call) are the kernel's
``queue:`` section, shared with every other way into the queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arcana.errors import ConfigError
from arcana.manifest import NAME_RE, TOPIC_RE


@dataclass(frozen=True)
class QueueCapabilityConfig:
    # Plugin name -> job types it may enqueue although another plugin's [[job]] declares them.
    extra_types: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for plugin, types in self.extra_types.items():
            if not NAME_RE.match(plugin):
                raise ConfigError(f"config key 'capabilities.queue.extra_types.{plugin}' is not a plugin name")
            for job_type in types:
                if not TOPIC_RE.match(job_type) or "*" in job_type:
                    raise ConfigError(
                        f"config key 'capabilities.queue.extra_types.{plugin}' holds {job_type!r}, "
                        "which is not a job type (dotted lowercase words, e.g. mail.send)"
                    )
