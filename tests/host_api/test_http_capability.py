"""``http_fetch`` against a real HTTP server on 127.0.0.1: grants, the SSRF rule, bounds, redirects, errors."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator

import pytest

from arcana.config import ArcanaConfig
from arcana.errors import ConfigError
from arcana.manifest import Manifest
from arcana.types import CapabilityRefused, PluginSpec
from arcana_host.http import HttpCapability
from arcana_host.http.addresses import resolve
from http_harness import FakeResolver, Fetcher, code, config, message
from http_upstream import Upstream


@pytest.fixture
def up() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def test_a_granted_host_is_fetched_with_status_headers_and_text_body(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/ok"))
    assert reply["status"] == 200 and reply["body"] == "hello" and reply["truncated"] is False
    assert reply["headers"]["x-upstream"] == "yes" and reply["url"] == up.url("/ok")


def test_method_headers_and_body_reach_the_server(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/echo"), method="put", headers={"X-Token": "t1"}, body="héllo")
    seen = json.loads(reply["body"])
    assert seen["method"] == "PUT" and seen["headers"]["X-Token"] == "t1"
    assert seen["body"].encode("latin-1") == "héllo".encode() and seen["headers"]["Accept-Encoding"] == "identity"


def test_a_binary_body_goes_and_comes_back_as_base64(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1")
    sent = json.loads(fetcher.fetch(up.url("/echo"), method="POST", body_base64="AAEC")["body"])
    assert sent["body"] == "\x00\x01\x02"
    reply = fetcher.fetch(up.url("/binary"))
    assert "body" not in reply and base64.b64decode(reply["body_base64"]) == b"\xff\xfe\x00\x01"


def test_a_head_request_has_an_empty_body(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/ok"), method="HEAD")
    assert reply["status"] == 200 and reply["body"] == ""


def test_an_error_status_is_an_answer_not_an_error(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/status?code=404"))
    assert reply["status"] == 404 and "error" not in reply


# --- grants and the SSRF rule ---


def test_a_host_not_granted_is_forbidden_and_never_contacted(up: Upstream) -> None:
    resolver = FakeResolver({"other.test": ["127.0.0.1"]})
    reply = Fetcher("api.example.com", resolver=resolver).fetch(up.url("/ok", host="other.test"))
    assert code(reply) == "FORBIDDEN" and "may not fetch other.test" in message(reply)
    assert resolver.asked == [] and up.hits["/ok"] == 0


def test_a_wildcard_name_resolving_to_loopback_is_refused(up: Upstream) -> None:
    resolver = FakeResolver({"a.example.com": ["127.0.0.1"]})
    reply = Fetcher("*.example.com", resolver=resolver).fetch(up.url("/ok", host="a.example.com"))
    assert code(reply) == "FORBIDDEN"
    assert "a.example.com resolves to a refused address: 127.0.0.1 is a loopback address" in message(reply)
    assert "never a wildcard" in message(reply) and up.hits["/ok"] == 0


def test_one_private_address_among_public_ones_is_enough_to_refuse(up: Upstream) -> None:
    resolver = FakeResolver({"a.example.com": ["93.184.216.34", "10.0.0.7"]})
    reply = Fetcher("*.example.com", resolver=resolver).fetch("http://a.example.com/")
    assert code(reply) == "FORBIDDEN" and "10.0.0.7 is a private address" in message(reply)


def test_an_ipv4_mapped_loopback_answer_is_refused() -> None:
    resolver = FakeResolver({"a.example.com": ["::ffff:127.0.0.1"]})
    reply = Fetcher("*.example.com", resolver=resolver).fetch("http://a.example.com/")
    assert code(reply) == "FORBIDDEN" and "IPv4-mapped form of 127.0.0.1" in message(reply)


def test_the_metadata_address_named_by_a_wildcard_host_is_refused() -> None:
    resolver = FakeResolver({"meta.example.com": ["169.254.169.254"]})
    reply = Fetcher("*.example.com", resolver=resolver).fetch("http://meta.example.com/latest/meta-data/")
    assert code(reply) == "FORBIDDEN" and "169.254.169.254 is a link-local address" in message(reply)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "127.0.0.1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address (the cloud metadata"),
        ("http://[::1]/", "::1 is a loopback address"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://[::ffff:169.254.169.254]/", "an IPv4-mapped form of 169.254.169.254"),
    ],
)
def test_literal_non_public_addresses_not_granted_exactly_are_forbidden_saying_why(url: str, why: str) -> None:
    reply = Fetcher("*.example.com", "localhost").fetch(url)
    assert code(reply) == "FORBIDDEN" and why in message(reply)
    assert "no capabilities.http entry names it exactly" in message(reply)


def test_a_public_literal_address_not_granted_is_forbidden_as_not_matching() -> None:
    reply = Fetcher("*.example.com").fetch("http://93.184.216.34/")
    assert code(reply) == "FORBIDDEN" and "matches none of its capabilities.http hosts" in message(reply)


def test_an_exact_name_lifts_the_rule_and_the_kernel_connects_to_the_address_it_vetted(up: Upstream) -> None:
    resolver = FakeResolver({"upstream.test": ["127.0.0.1"]})
    reply = Fetcher("upstream.test", resolver=resolver).fetch(up.url("/echo", host="upstream.test"))
    assert reply["status"] == 200 and json.loads(reply["body"])["headers"]["Host"] == f"upstream.test:{up.port}"
    assert resolver.asked == ["upstream.test"]  # resolved once; the connection went to that answer


def test_a_literal_address_granted_exactly_is_reached_without_dns(up: Upstream) -> None:
    resolver = FakeResolver()
    assert Fetcher("127.0.0.1", resolver=resolver).fetch(up.url("/ok"))["status"] == 200
    assert resolver.asked == []


def test_localhost_granted_by_name_is_reached_through_the_system_resolver(up: Upstream) -> None:
    fetcher = Fetcher("localhost", resolver=resolve)
    assert fetcher.fetch(up.url("/ok", host="localhost"))["status"] == 200


def test_a_name_that_does_not_resolve_is_service_unavailable() -> None:
    reply = Fetcher("nowhere.test").fetch("http://nowhere.test/")
    assert code(reply) == "SERVICE_UNAVAILABLE" and "nowhere.test does not resolve" in message(reply)


# --- redirects ---


def test_a_redirect_to_a_granted_host_is_followed(up: Upstream) -> None:
    resolver = FakeResolver({"b.test": ["127.0.0.1"]})
    fetcher = Fetcher("127.0.0.1", "b.test", resolver=resolver)
    reply = fetcher.fetch(up.url("/redirect?to=" + up.url("/echo", host="b.test")))
    assert reply["status"] == 200 and reply["url"] == up.url("/echo", host="b.test")
    assert json.loads(reply["body"])["headers"]["Host"] == f"b.test:{up.port}"


def test_a_relative_redirect_is_followed_on_the_same_host(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/redirect?to=/ok&code=308"))
    assert reply["status"] == 200 and reply["body"] == "hello"


def test_a_redirect_to_a_host_not_granted_is_refused_and_not_followed(up: Upstream) -> None:
    resolver = FakeResolver({"evil.test": ["127.0.0.1"]})
    reply = Fetcher("127.0.0.1", resolver=resolver).fetch(up.url("/redirect?to=" + up.url("/echo", host="evil.test")))
    assert code(reply) == "FORBIDDEN"
    assert message(reply).startswith("redirect from 127.0.0.1 to evil.test refused")
    assert "the redirect was not followed" in message(reply)
    assert resolver.asked == [] and up.hits["/echo"] == 0


def test_a_redirect_to_the_metadata_address_is_refused(up: Upstream) -> None:
    resolver = FakeResolver({"b.example.com": ["127.0.0.1"], "meta.example.com": ["169.254.169.254"]})
    fetcher = Fetcher("127.0.0.1", "*.example.com", resolver=resolver)
    reply = fetcher.fetch(up.url("/redirect?to=http://meta.example.com/latest/"))
    assert code(reply) == "FORBIDDEN" and "169.254.169.254 is a link-local address" in message(reply)


def test_past_max_redirects_the_last_redirect_is_the_answer(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1", cfg=config({"max_redirects": 2})).fetch(up.url("/loop"))
    assert reply["status"] == 302 and reply["headers"]["location"] == "/loop"
    assert up.hits["/loop"] == 3


def test_with_max_redirects_zero_a_redirect_is_returned_as_is(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1", cfg=config({"max_redirects": 0})).fetch(up.url("/redirect?to=/ok"))
    assert reply["status"] == 302 and up.hits["/ok"] == 0


def test_a_303_after_a_post_is_followed_with_a_get_without_body(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/redirect?to=/echo&code=303"), method="POST", body="x")
    seen = json.loads(reply["body"])
    assert seen["method"] == "GET" and seen["body"] == ""


def test_a_307_keeps_the_method_and_the_body(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/redirect?to=/echo&code=307"), method="POST", body="x")
    seen = json.loads(reply["body"])
    assert seen["method"] == "POST" and seen["body"] == "x"


def test_credentials_are_not_carried_to_another_host_by_a_redirect(up: Upstream) -> None:
    resolver = FakeResolver({"b.test": ["127.0.0.1"]})
    fetcher = Fetcher("127.0.0.1", "b.test", resolver=resolver)
    headers = {"Authorization": "Bearer secret", "X-Other": "kept"}
    elsewhere = fetcher.fetch(up.url("/redirect?to=" + up.url("/echo", host="b.test")), headers=headers)
    assert "Authorization" not in json.loads(elsewhere["body"])["headers"]
    assert json.loads(elsewhere["body"])["headers"]["X-Other"] == "kept"
    same = fetcher.fetch(up.url("/redirect?to=/echo"), headers=headers)
    assert json.loads(same["body"])["headers"]["Authorization"] == "Bearer secret"


# --- bounds ---


def test_a_body_over_max_response_bytes_is_cut_there_and_marked_truncated(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1", cfg=config({"max_response_bytes": 1000}))
    reply = fetcher.fetch(up.url("/big?n=5000"))
    assert reply["truncated"] is True and reply["body"] == "x" * 1000
    exact = fetcher.fetch(up.url("/big?n=1000"))
    assert exact["truncated"] is False and len(exact["body"]) == 1000


def test_a_fetch_that_outlives_its_timeout_is_plugin_timeout(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1").fetch(up.url("/stall"), timeout_ms=200)
    assert code(reply) == "PLUGIN_TIMEOUT" and "(timeout_ms 200)" in message(reply)


def test_a_fetch_never_outlives_the_plugin_calls_deadline(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1")
    reply = fetcher.fetch(up.url("/stall"), context=fetcher.call(deadline_s=0.2), timeout_ms=30_000)
    assert code(reply) == "PLUGIN_TIMEOUT" and "the plugin call's deadline" in message(reply)


def test_a_call_whose_deadline_has_passed_does_not_connect(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1")
    context = fetcher.call(deadline_s=0.2)
    context.deadline -= 1
    assert code(fetcher.fetch(up.url("/ok"), context=context)) == "PLUGIN_TIMEOUT"
    assert up.hits["/ok"] == 0


def test_a_plugin_call_may_fetch_at_most_max_fetches_per_call_times(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1", cfg=config({"max_fetches_per_call": 2}))
    context = fetcher.call()
    assert [fetcher.fetch(up.url("/ok"), context=context).get("status") for _ in range(2)] == [200, 200]
    reply = fetcher.fetch(up.url("/ok"), context=context)
    assert code(reply) == "RATE_LIMITED" and "max_fetches_per_call" in message(reply)
    assert fetcher.fetch(up.url("/ok"))["status"] == 200  # the next call has its own budget


def test_a_request_body_over_max_request_bytes_is_payload_too_large(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1", cfg=config({"max_request_bytes": 10}))
    assert code(fetcher.fetch(up.url("/echo"), method="POST", body="x" * 11)) == "PAYLOAD_TOO_LARGE"
    encoded = base64.b64encode(b"x" * 11).decode()
    assert code(fetcher.fetch(up.url("/echo"), method="POST", body_base64=encoded)) == "PAYLOAD_TOO_LARGE"
    assert fetcher.fetch(up.url("/echo"), method="POST", body="x" * 10)["status"] == 200
    assert up.hits["/echo"] == 1


def test_request_headers_over_max_header_bytes_are_payload_too_large(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1", cfg=config({"max_header_bytes": 100}))
    reply = fetcher.fetch(up.url("/ok"), headers={"X-Big": "y" * 100})
    assert code(reply) == "PAYLOAD_TOO_LARGE" and "max_header_bytes" in message(reply)


def test_response_headers_over_max_header_bytes_are_payload_too_large(up: Upstream) -> None:
    reply = Fetcher("127.0.0.1", cfg=config({"max_header_bytes": 40})).fetch(up.url("/ok"))
    assert code(reply) == "PAYLOAD_TOO_LARGE" and "answered with" in message(reply)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_host_refusing_connections_is_service_unavailable() -> None:
    reply = Fetcher("127.0.0.1").fetch(f"http://127.0.0.1:{_closed_port()}/")
    assert code(reply) == "SERVICE_UNAVAILABLE" and "host 127.0.0.1 is unreachable" in message(reply)


@pytest.mark.parametrize(
    ("request_", "text"),
    [
        ({"url": "ftp://127.0.0.1/"}, "only http and https"),
        ({"url": "file:///etc/passwd"}, "only http and https"),
        ({"url": "http://user:pw@127.0.0.1/"}, "holds credentials"),
        ({"url": "http:///nohost"}, "has no valid host"),
        ({"url": "http://127.0.0.1:99999/"}, "is not a valid URL"),
        ({"url": "http://127.0.0.1/a b"}, "spaces or control characters"),
        ({"url": 3}, "'url' must be"),
        ({}, "'url' must be"),
        ({"url": "http://127.0.0.1/", "method": "TRACE"}, "'method' must be one of"),
        ({"url": "http://127.0.0.1/", "headers": {"Host": "evil"}}, "is set by the kernel"),
        ({"url": "http://127.0.0.1/", "headers": {"transfer-encoding": "chunked"}}, "is set by the kernel"),
        ({"url": "http://127.0.0.1/", "headers": {"Content-Length": "1"}}, "is set by the kernel"),
        ({"url": "http://127.0.0.1/", "headers": {"X-A": "b\r\nX-B: c"}}, "without CR, LF or NUL"),
        ({"url": "http://127.0.0.1/", "headers": {"bad name": "x"}}, "not a valid HTTP header name"),
        ({"url": "http://127.0.0.1/", "headers": ["x"]}, "'headers' must be an object"),
        ({"url": "http://127.0.0.1/", "body": "a", "body_base64": "YQ=="}, "not both"),
        ({"url": "http://127.0.0.1/", "body_base64": "***"}, "cannot be encoded"),
        ({"url": "http://127.0.0.1/", "body": 5}, "'body' must be a string"),
        ({"url": "http://127.0.0.1/", "timeout_ms": 0}, "'timeout_ms' must be an integer of 1-30000"),
        ({"url": "http://127.0.0.1/", "timeout_ms": 30_001}, "'timeout_ms' must be an integer of 1-30000"),
        ({"url": "http://127.0.0.1/", "follow": True}, "does not take ['follow']"),
    ],
)
def test_a_bad_request_is_validation_failed_naming_what_is_wrong(request_: dict[str, object], text: str) -> None:
    reply = Fetcher("127.0.0.1").fetch(**request_)
    assert code(reply) == "VALIDATION_FAILED" and text in message(reply)


# --- configuration ---


def _spec(value: object) -> PluginSpec:
    return PluginSpec(Manifest("p", "1.0.0", capabilities={"http": value}), frozenset({"http"}))  # type: ignore[dict-item]


def test_a_plugin_with_bad_host_patterns_is_refused_at_load_naming_each() -> None:
    with pytest.raises(CapabilityRefused) as refused:
        HttpCapability(ArcanaConfig()).configure(_spec(("*", "ok.example.com", "10.0.0.0/8")))
    assert [p.field for p in refused.value.problems] == ["capabilities.http", "capabilities.http"]
    assert "'*' would allow every host" in str(refused.value) and "'10.0.0.0/8'" in str(refused.value)


def test_http_true_is_refused_with_the_fix_to_list_hosts() -> None:
    with pytest.raises(CapabilityRefused, match="lists no hosts"):
        HttpCapability(ArcanaConfig()).configure(_spec(True))


@pytest.mark.parametrize(
    ("section", "text"),
    [
        ({"max_response_bytes": 0}, "'capabilities.http.max_response_bytes' must be an integer >= 1"),
        ({"max_redirects": -1}, "'capabilities.http.max_redirects' must be an integer >= 0"),
        ({"max_redirects": 21}, "at most 20"),
        ({"default_timeout_ms": 5000, "max_timeout_ms": 1000}, "must not exceed max_timeout_ms"),
        ({"max_bytes": 1}, "max_bytes"),
    ],
)
def test_bad_capability_config_stops_start_up_naming_the_key(section: dict[str, int], text: str) -> None:
    with pytest.raises(ConfigError, match=text.replace("(", r"\(")):
        HttpCapability(ArcanaConfig(capabilities={"http": section}))


def test_a_fetch_that_may_change_something_remote_marks_the_call(up: Upstream) -> None:
    fetcher = Fetcher("127.0.0.1")
    reading, writing = fetcher.call(), fetcher.call()
    fetcher.fetch(up.url("/ok"), context=reading)
    fetcher.fetch(up.url("/echo"), context=writing, method="POST", body="x")
    assert not reading.may_have_saved and writing.may_have_saved
