"""The SSRF rule: which resolved addresses a fetch may not connect to, and why it says so."""

from __future__ import annotations

import pytest

from arcana_host.http.addresses import blocked


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "::1 is a loopback address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address (the cloud metadata service)"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("fe80::1%eth0", "a link-local address"),
        ("fd00:ec2::254", "a private address (the cloud metadata service)"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("172.31.255.255", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("fdff::1", "a private address"),
        ("100.64.0.1", "a shared (carrier-grade NAT) address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("255.255.255.255", "a reserved address"),
        ("198.18.0.1", "not a public address"),
        ("192.0.2.1", "not a public address"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1 is an IPv4-mapped form of 127.0.0.1, a loopback address"),
        ("::ffff:169.254.169.254", "an IPv4-mapped form of 169.254.169.254, a link-local address"),
        ("::ffff:10.0.0.1", "an IPv4-mapped form of 10.0.0.1, a private address"),
        ("2002:7f00:1::1", "a 6to4 form of 127.0.0.1, a loopback address"),
        ("64:ff9b::a9fe:a9fe", "a NAT64 form of 169.254.169.254, a link-local address"),
        ("::7f00:1", "a reserved address"),  # the old IPv4-compatible form of 127.0.0.1
        ("not-an-ip", "not-an-ip is not an IP address"),
    ],
)
def test_addresses_a_fetch_may_not_reach_are_refused_with_the_reason(address: str, why: str) -> None:
    reason = blocked(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:2800:220:1::1", "::ffff:8.8.8.8", "2002:808:808::1"]
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked(address) is None
