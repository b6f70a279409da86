"""``http_fetch`` through retries and the per-host circuit breaker, against a server that fails on command.

The breaker's clock is a fake one the test moves, so the cool-down passes
without waiting; the server counts requests, so "fails fast" means "never
reached the server".
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from arcana.resilience import BreakerState
from arcana.resilience.retry import RETRIES
from arcana.resilience.service import Resilience, event_payload
from arcana_host.http.capability import BREAKER_MIN_WAIT_S
from http_harness import FakeResolver, Fetcher, code, config, message
from http_upstream import Upstream
from queue_fakes import FakeClock, RecordingBus


@pytest.fixture
def up() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


def _fetcher(threshold: int = 3, attempts: int = 1, bus: RecordingBus | None = None) -> tuple[Fetcher, FakeClock]:
    clock, cfg = FakeClock(1000.0), config(attempts=attempts, threshold=threshold)
    resilience = Resilience.from_config(cfg.resilience, clock=clock)
    if bus is not None:  # what the kernel does with a state change
        resilience.on_change(lambda *change: bus.emit(*event_payload(*change)))
    board = resilience.http
    resolver = FakeResolver({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    return Fetcher("127.0.0.1", "a.test", "b.test", cfg=cfg, resolver=resolver, breakers=board), clock


# --- the breaker ---


def test_the_breaker_opens_fails_fast_half_opens_and_a_good_probe_closes_it(up: Upstream) -> None:
    bus = RecordingBus()
    fetcher, clock = _fetcher(threshold=3, bus=bus)
    breaker = fetcher.capability.breakers.get("127.0.0.1")
    up.failing = True
    assert [fetcher.fetch(up.url("/flaky"))["status"] for _ in range(3)] == [503, 503, 503]
    assert breaker.state is BreakerState.OPEN and up.hits["/flaky"] == 3

    refused = fetcher.fetch(up.url("/flaky"))
    assert code(refused) == "SERVICE_UNAVAILABLE" and "circuit open" in message(refused)
    assert refused["error"]["retry_after"] == 10
    assert up.hits["/flaky"] == 3  # failed fast: the server never saw it

    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    up.failing = False
    assert fetcher.fetch(up.url("/flaky"))["status"] == 200
    assert breaker.state is BreakerState.CLOSED and up.hits["/flaky"] == 4
    assert [(e.topic, e.payload["name"]) for e in bus.emitted] == [
        ("breaker.opened", "127.0.0.1"),
        ("breaker.half_opened", "127.0.0.1"),
        ("breaker.closed", "127.0.0.1"),
    ]
    assert bus.emitted[0].payload == {"kind": "http", "name": "127.0.0.1", "old": "closed", "new": "open"}


def test_a_failed_probe_opens_the_breaker_again_for_another_cool_down(up: Upstream) -> None:
    fetcher, clock = _fetcher(threshold=2)
    up.failing = True
    for _ in range(2):
        fetcher.fetch(up.url("/flaky"))
    clock.now += 10
    assert fetcher.fetch(up.url("/flaky"))["status"] == 503  # the probe, and it fails
    assert code(fetcher.fetch(up.url("/flaky"))) == "SERVICE_UNAVAILABLE"
    assert up.hits["/flaky"] == 3


def test_client_errors_count_for_the_host_not_against_it(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=2)
    for _ in range(4):
        assert fetcher.fetch(up.url("/status?code=404"))["status"] == 404
    assert fetcher.capability.breakers.get("127.0.0.1").state is BreakerState.CLOSED


def test_connection_failures_open_the_breaker() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fetcher, _ = _fetcher(threshold=2)
    replies = [fetcher.fetch(f"http://127.0.0.1:{port}/") for _ in range(3)]
    assert [message(r).split(":")[0] for r in replies[:2]] == ["host 127.0.0.1 is unreachable"] * 2
    assert "circuit open" in message(replies[2])


def test_timeouts_count_against_the_host(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=1)
    assert code(fetcher.fetch(up.url("/stall"), timeout_ms=int(BREAKER_MIN_WAIT_S * 1000) + 200)) == "PLUGIN_TIMEOUT"
    assert code(fetcher.fetch(up.url("/ok"))) == "SERVICE_UNAVAILABLE" and up.hits["/ok"] == 0


def test_a_fetch_given_too_little_time_does_not_open_the_breaker_for_everyone(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=1)
    assert code(fetcher.fetch(up.url("/stall"), timeout_ms=50)) == "PLUGIN_TIMEOUT"
    assert fetcher.fetch(up.url("/ok"))["status"] == 200


def test_each_host_has_its_own_breaker(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=1)
    up.failing = True
    fetcher.fetch(up.url("/flaky", host="a.test"))
    assert code(fetcher.fetch(up.url("/ok", host="a.test"))) == "SERVICE_UNAVAILABLE"
    assert fetcher.fetch(up.url("/ok", host="b.test"))["status"] == 200


def test_an_open_breaker_refuses_before_resolving_the_host(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=1)
    up.failing = True
    fetcher.fetch(up.url("/flaky", host="a.test"))
    asked = len(fetcher.resolver.asked)  # type: ignore[attr-defined]
    assert code(fetcher.fetch(up.url("/ok", host="a.test"))) == "SERVICE_UNAVAILABLE"
    assert len(fetcher.resolver.asked) == asked  # type: ignore[attr-defined]


# --- retries ---


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"])
def test_idempotent_methods_are_retried_on_503_and_the_last_answer_returned(up: Upstream, method: str) -> None:
    fetcher, _ = _fetcher(threshold=100, attempts=3)
    up.failing = True
    assert fetcher.fetch(up.url("/flaky"), method=method)["status"] == 503
    assert up.hits["/flaky"] == 3


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_post_and_patch_are_never_retried(up: Upstream, method: str) -> None:
    fetcher, _ = _fetcher(threshold=100, attempts=3)
    up.failing = True
    assert fetcher.fetch(up.url("/flaky"), method=method, body="x")["status"] == 503
    assert up.hits["/flaky"] == 1


def test_a_retry_that_succeeds_answers_with_the_success(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=100, attempts=3)
    up.fail_next = 2
    assert fetcher.fetch(up.url("/flaky"))["status"] == 200
    assert up.hits["/flaky"] == 3


def test_other_server_errors_are_not_retried(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=100, attempts=3)
    assert fetcher.fetch(up.url("/status?code=500"))["status"] == 500
    assert up.hits["/status"] == 1


def test_a_refused_connection_is_retried_for_a_get_and_not_for_a_post() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fetcher, _ = _fetcher(threshold=100, attempts=3)
    before = RETRIES.labels("http")._value.get()
    assert code(fetcher.fetch(f"http://127.0.0.1:{port}/")) == "SERVICE_UNAVAILABLE"
    assert RETRIES.labels("http")._value.get() == before + 2
    assert code(fetcher.fetch(f"http://127.0.0.1:{port}/", method="POST")) == "SERVICE_UNAVAILABLE"
    assert RETRIES.labels("http")._value.get() == before + 2


def test_retries_stop_once_the_breaker_opens(up: Upstream) -> None:
    fetcher, _ = _fetcher(threshold=2, attempts=5)
    up.failing = True
    reply = fetcher.fetch(up.url("/flaky"))
    assert code(reply) == "SERVICE_UNAVAILABLE" and "circuit open" in message(reply)
    assert up.hits["/flaky"] == 2
