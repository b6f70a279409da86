"""The manifest's http host patterns: what loads, what is refused with a fix, and what each entry matches."""

from __future__ import annotations

import pytest

from arcana_host.http import hosts

GRANT = hosts.compile_grant("p", ("api.example.com", "*.example.org", "127.0.0.1", "[::1]", "localhost"))


@pytest.mark.parametrize(
    "host", ["api.example.com", "a.example.org", "a.b.example.org", "127.0.0.1", "::1", "localhost"]
)
def test_a_host_matching_an_entry_is_allowed(host: str) -> None:
    assert GRANT.allows(host)


@pytest.mark.parametrize(
    "host",
    [
        "example.org",  # *.example.org is subdomains only
        "example.com",
        "x.api.example.com",  # an exact entry is not a wildcard
        "evil-example.org",
        "example.org.evil.com",
        "127.0.0.2",
        "::2",
        "localhost.evil.com",
    ],
)
def test_a_host_matching_no_entry_is_not_allowed(host: str) -> None:
    assert not GRANT.allows(host)


def test_only_exact_entries_name_a_host_exactly() -> None:
    assert GRANT.names_exactly("localhost") and GRANT.names_exactly("::1") and GRANT.names_exactly("127.0.0.1")
    assert not GRANT.names_exactly("a.example.org")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("*", "would allow every host"),
        ("*.*", "would allow every host"),
        ("*.com", "would match a whole top-level domain"),
        ("10.0.0.0/8", "is an address range or a URL"),
        ("https://api.example.com", "is an address range or a URL"),
        ("api.example.com:443", "has a port or is not an address"),
        ("api-*.example.com", "has a wildcard inside"),
        ("*.127.0.0.1", "is not a wildcard over a domain"),
        ("API.example.com", "is not lowercase"),
        ("exa mple.com", "is not a host name"),
        ("bücher.example", "is not a host name"),
        ("2130706433", "is not a host name"),  # a number is an address in disguise
        ("127.1", "is not a host name"),
    ],
)
def test_a_bad_entry_is_refused_at_load_with_a_fix(entry: str, message: str) -> None:
    problems = hosts.problems((entry,))
    assert len(problems) == 1 and message in problems[0].message and problems[0].fix
    assert problems[0].field == "capabilities.http"


@pytest.mark.parametrize("value", [True, (), None])
def test_a_grant_must_list_hosts(value: object) -> None:
    (problem,) = hosts.problems(value)
    assert "lists no hosts" in problem.message and "api.example.com" in problem.fix


def test_the_number_of_entries_is_bounded() -> None:
    (problem,) = hosts.problems(tuple(f"h{i}.example.com" for i in range(hosts.MAX_PATTERNS + 1)))
    assert f"at most {hosts.MAX_PATTERNS}" in problem.message


def test_good_entries_load() -> None:
    assert hosts.problems(("api.example.com", "*.example.com", "localhost", "10.0.0.5", "[::1]", "fd00::1")) == []


@pytest.mark.parametrize(
    ("url_host", "normal"),
    [("API.Example.COM", "api.example.com"), ("example.com.", "example.com"), ("::FFFF:7F00:1", "::ffff:7f00:1")],
)
def test_url_hosts_are_compared_in_one_normal_form(url_host: str, normal: str) -> None:
    assert hosts.normalize_host(url_host) == normal


@pytest.mark.parametrize("url_host", ["", "exa_mple.com", "bücher.example", "0x7f.1", "a" * 254])
def test_what_is_not_a_host_has_no_normal_form(url_host: str) -> None:
    assert hosts.normalize_host(url_host) is None
