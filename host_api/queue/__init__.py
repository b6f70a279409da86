"""The ``queue`` capability: a plugin enqueues its own job types and reads its own jobs' status.

Units: ``config`` (``capabilities.queue``: job types the operator grants beyond
a plugin's own), ``budget`` (enqueues and emits per plugin call, shared with
``events``), ``requests`` (validation), ``capability`` (host functions). The
queue itself is the kernel's ``arcana.queue.JobQueue``.
"""

from arcana_host.queue.budget import CallBudget
from arcana_host.queue.capability import QueueCapability
from arcana_host.queue.config import QueueCapabilityConfig

__all__ = ["CallBudget", "QueueCapability", "QueueCapabilityConfig"]
