"""The `log` capability: plugins write structured log lines through the host."""

from arcana_host.log.capability import LogCapability

__all__ = ["LogCapability"]
