"""The `auth` capability: password hashing and role checks for plugins (`auth.issue` to mint tokens)."""

from arcana_host.identity.capability import IdentityCapability

__all__ = ["IdentityCapability"]
