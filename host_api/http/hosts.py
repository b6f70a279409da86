"""Which hosts a plugin may fetch: the patterns of its manifest, checked at load, matched per request.

    [capabilities]
    http = ["api.example.com", "*.example.com", "127.0.0.1"]

An entry is a host name (``api.example.com``, ``localhost``), a literal IP
address (``127.0.0.1``, ``::1`` or ``[::1]``), or ``*.`` followed by a name
of at least two labels: ``*.example.com`` matches any subdomain at any depth
(``a.example.com``, ``a.b.example.com``) but not ``example.com`` itself; list
both to get both. A grant covers every port of the host. There is no bare
``*``, no ``*.com``, no wildcard inside a label and no address range:
reaching a network is never one line in a manifest.

Only an exact entry (a name or an address written out) lets a request reach
a loopback, private or link-local address (``arcana_host.http.addresses``);
a wildcard never does.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from arcana.errors import Problem

MAX_PATTERNS = 100
MAX_HOST_CHARS = 253
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
FIELD = "capabilities.http"


def canonical_address(text: str) -> str | None:
    """The canonical text of an IP literal (``[::1]`` -> ``::1``), or None when ``text`` is not one."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def is_host_name(text: str) -> bool:
    """LDH labels, lowercase ASCII, and a last label that is not all digits (that would be an address)."""
    if not text or len(text) > MAX_HOST_CHARS:
        return False
    labels = text.split(".")
    return all(_LABEL.match(label) for label in labels) and not labels[-1].isdigit()


def normalize_host(host: str) -> str | None:
    """A URL's host as grants compare it: lowercase, no trailing dot, addresses canonical; None if not a host."""
    host = host.lower().rstrip(".")
    address = canonical_address(host)
    if address is not None:
        return address
    return host if is_host_name(host) else None


@dataclass(frozen=True, slots=True)
class HostGrant:
    """Per plugin: the exact hosts and the wildcard suffixes (``.example.com``) it may fetch."""

    plugin: str
    exact: frozenset[str]
    suffixes: tuple[str, ...]

    def allows(self, host: str) -> bool:
        """``host`` as ``normalize_host`` gives it."""
        return host in self.exact or any(host.endswith(s) for s in self.suffixes)

    def names_exactly(self, host: str) -> bool:
        """Whether an exact entry names ``host``: only that lets it reach a non-public address."""
        return host in self.exact


def _entry_problem(entry: str) -> Problem | None:
    shown = entry[:100]
    if entry.strip() in ("*", "*.*", ""):
        return Problem(FIELD, f"'{shown}' would allow every host", 'list the hosts, e.g. ["api.example.com"]')
    if "/" in entry:
        return Problem(
            FIELD, f"'{shown}' is an address range or a URL", "list single hosts or addresses, e.g. 10.0.0.5"
        )
    if ":" in entry and canonical_address(entry) is None:
        return Problem(
            FIELD, f"'{shown}' has a port or is not an address", "write the host alone; a grant covers every port"
        )
    if canonical_address(entry) is not None:
        return None
    if entry != entry.lower():
        return Problem(FIELD, f"'{shown}' is not lowercase", f"write '{entry.lower()[:100]}'")
    if entry.startswith("*."):
        suffix = entry[2:]
        if canonical_address(suffix) is not None or not is_host_name(suffix):
            return Problem(FIELD, f"'{shown}' is not a wildcard over a domain", "write *.example.com")
        if "." not in suffix:
            return Problem(
                FIELD, f"'{shown}' would match a whole top-level domain", "name the domain, e.g. *.example.com"
            )
        return None
    if "*" in entry:
        return Problem(FIELD, f"'{shown}' has a wildcard inside", "only a leading *. is allowed, e.g. *.example.com")
    if not is_host_name(entry.rstrip(".")):
        return Problem(
            FIELD,
            f"'{shown}' is not a host name",
            "use a DNS name in ASCII (xn-- for international names) or a literal IP address",
        )
    return None


def problems(patterns: Any) -> list[Problem]:
    """Every reason ``patterns`` (the manifest's value) cannot be a grant."""
    if not isinstance(patterns, tuple) or not patterns:
        return [Problem(FIELD, "lists no hosts", 'list the hosts the plugin fetches, e.g. http = ["api.example.com"]')]
    if len(patterns) > MAX_PATTERNS:
        return [Problem(FIELD, f"lists {len(patterns)} hosts; at most {MAX_PATTERNS}", "use *.domain wildcards")]
    return [p for p in (_entry_problem(e) for e in patterns) if p is not None]


def compile_grant(plugin: str, patterns: tuple[str, ...]) -> HostGrant:
    """The grant of entries ``problems`` accepted."""
    exact, suffixes = set(), []
    for entry in patterns:
        if entry.startswith("*."):
            suffixes.append(entry[1:])
        else:
            exact.add(canonical_address(entry) or entry.rstrip("."))
    return HostGrant(plugin, frozenset(exact), tuple(sorted(set(suffixes))))
