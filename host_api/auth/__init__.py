"""The `auth` capability: password hashing and role checks for plugins (`auth.issue` to mint tokens)."""

from arcana_host.auth.capability import AuthCapability, Identity

__all__ = ["AuthCapability", "Identity"]
