"""The server-side request forgery rule: which resolved addresses a fetch may connect to.

A plugin granted ``*.example.com`` must not reach the machine it runs on or
its network because someone pointed ``x.example.com`` at ``127.0.0.1``, nor
the cloud metadata service at ``169.254.169.254``. So every address a host
resolves to is classified, and the fetch is refused when ANY of them is:

    unspecified   0.0.0.0, ::
    loopback      127.0.0.0/8, ::1
    link-local    169.254.0.0/16 (the metadata service included), fe80::/10
    multicast     224.0.0.0/4, ff00::/8
    private       10/8, 172.16/12, 192.168/16, fc00::/7; shared 100.64/10
    reserved      240.0.0.0/4, ::/8 (IPv4-compatible forms), ...
    non-public    anything else not globally routable (documentation, benchmarking ranges)

IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by that address. A
grant that names the host exactly (``http = ["localhost"]``) lifts the rule
for that host, never a wildcard. The caller then connects to the address it
vetted, not to the name again, so a second DNS answer cannot swap it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses to connect to, in order (a test injects its own; the kernel uses getaddrinfo).
Resolver = Callable[[str, int], Sequence[str]]

METADATA = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to for a TCP connection, first answer first, without repeats."""
    found: list[str] = []
    for _family, _type, _proto, _name, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0])
        if address not in found:
            found.append(address)
    return found


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    if ip.ipv4_mapped is not None:
        return "an IPv4-mapped form of", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "a 6to4 form of", ip.sixtofour
    if ip in _NAT64:
        return "a NAT64 form of", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address" + (" (the cloud metadata service)" if ip in METADATA else "")
    if ip.is_multicast:
        return "a multicast address"
    if any(ip in net for net in _PRIVATE):
        return "a private address" + (" (the cloud metadata service)" if ip in METADATA else "")
    if ip in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def blocked(address: str | IPAddress) -> str | None:
    """Why a fetch may not connect to ``address`` ("169.254.169.254 is a link-local address"), or None."""
    try:
        ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{str(address)[:60]} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_v4(ip)
        if embedded is not None:
            form, v4 = embedded
            kind = _kind(v4)
            return None if kind is None else f"{ip} is {form} {v4}, {kind}"
    kind = _kind(ip)
    return None if kind is None else f"{ip} is {kind}"
