"""The public host-function catalogue: every name a plugin may import.

This is the contract of ARCHITECTURE.md section 3.4: each host function in
namespace `extism:host/user` belongs to one capability, whose grant unlocks
it. The kernel checks a module's imports against this table *before* it
instantiates the module, so a function named here whose capability is not yet
implemented by this kernel is still recognised and refused by name.
"""

from __future__ import annotations

HOST_NAMESPACE = "extism:host/user"

CATALOG: dict[str, str] = {
    "log": "log",
    "auth_hash_password": "auth",
    "auth_verify_password": "auth",
    "auth_check_role": "auth",
    "auth_issue_token": "auth.issue",
    "store_get": "store",
    "store_put": "store",
    "store_delete": "store",
    "store_query": "store",
    "store_batch": "store",
    "kv_get": "store",
    "kv_set": "store",
    "kv_delete": "store",
    "kv_incr": "store",
    "queue_enqueue": "queue",
    "queue_status": "queue",
    "http_fetch": "http",
    "event_emit": "events",
    "config_get": "config",
}


def capability_of(function: str) -> str | None:
    return CATALOG.get(function)
