"""The rate limiters: the fixed window, retry-after, the key bound, and Redis shared between processes."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from prometheus_client import REGISTRY

from arcana import ratelimit
from arcana.errors import RateLimited, ServiceUnavailable
from arcana.ratelimit import Decision, MemoryLimiter, Rate, RedisLimiter, build_limiter
from database_fixtures import REDIS_URL

PER_MINUTE = Rate(3, 60)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def hits(limiter: MemoryLimiter, key: str, count: int, rate: Rate = PER_MINUTE) -> list[Decision]:
    return [limiter.hit_now(key, rate) for _ in range(count)]


@pytest.mark.parametrize(
    ("text", "rate"),
    [("1/second", Rate(1, 1)), ("100/minute", Rate(100, 60)), ("5/hour", Rate(5, 3600)), ("2/day", Rate(2, 86400))],
)
def test_a_rate_is_parsed_from_the_manifest_form(text: str, rate: Rate) -> None:
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["0/minute", "10/week", "ten/minute", "10 / minute", ""])
def test_a_bad_rate_is_refused_and_zero_means_off(text: str) -> None:
    assert Rate.parse("0") is None
    with pytest.raises(ValueError, match="is not a rate"):
        Rate.parse(text)


def test_the_n_plus_first_hit_in_a_window_is_refused_with_the_time_to_its_end() -> None:
    clock = Clock()
    limiter = MemoryLimiter(100, clock)
    first = hits(limiter, "k", 1)[0]
    clock.now += 20
    decisions = hits(limiter, "k", 3)
    assert first == Decision(True, 3, 2, 60.0)
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[-1] == Decision(False, 3, 0, 40.0)
    with pytest.raises(RateLimited) as refused:
        decisions[-1].check("GET /x", "route")
    assert refused.value.retry_after == 40 and refused.value.limit == 3


def test_an_allowed_decision_gives_the_same_ratelimit_fields_a_refusal_does() -> None:
    assert Decision(True, 3, 2, 40.2).headers() == {
        "ratelimit-limit": "3",
        "ratelimit-remaining": "2",
        "ratelimit-reset": "41",
    }
    assert Decision(True, 3, 0, 0.0).headers()["ratelimit-reset"] == "1"  # whole seconds, never 0


def test_every_refusal_is_counted_by_scope_and_an_allowed_hit_is_not() -> None:
    def count(scope: str) -> float:
        return REGISTRY.get_sample_value("arcana_rate_limited_total", {"scope": scope}) or 0.0

    before = {scope: count(scope) for scope in ("route", "address")}
    Decision(True, 3, 2, 1.0).check("GET /x", "route")
    for _ in range(2):
        with pytest.raises(RateLimited):
            Decision(False, 3, 0, 1.0).check("GET /x", "route")
    with pytest.raises(RateLimited):
        Decision(False, 3, 0, 1.0).check("this client address", "address")
    assert count("route") - before["route"] == 2 and count("address") - before["address"] == 1


def test_a_new_window_opens_once_the_old_one_ends() -> None:
    clock = Clock()
    limiter = MemoryLimiter(100, clock)
    hits(limiter, "k", 4)
    clock.now += 59.9
    assert not limiter.hit_now("k", PER_MINUTE).allowed
    clock.now += 0.1
    assert limiter.hit_now("k", PER_MINUTE) == Decision(True, 3, 2, 60.0)


def test_keys_and_rates_count_separately() -> None:
    limiter = MemoryLimiter(100, Clock())
    hits(limiter, "alice", 3)
    assert not limiter.hit_now("alice", PER_MINUTE).allowed
    assert limiter.hit_now("bob", PER_MINUTE).allowed
    assert limiter.hit_now("alice", Rate(10, 60)).allowed  # a changed limit starts afresh


def test_memory_stays_bounded_and_the_least_recently_used_key_goes_first() -> None:
    limiter = MemoryLimiter(3, Clock())
    hits(limiter, "a", 3)
    hits(limiter, "b", 3)
    hits(limiter, "c", 1)
    hits(limiter, "a", 1)  # a is now the most recently used: b is the oldest
    for n in range(50):
        limiter.hit_now(f"spray-{n}", PER_MINUTE)
        assert len(limiter) <= 3
    limiter = MemoryLimiter(3, Clock())
    hits(limiter, "a", 3)
    hits(limiter, "b", 3)
    hits(limiter, "c", 1)
    hits(limiter, "a", 1)
    limiter.hit_now("d", PER_MINUTE)  # evicts b, not a
    assert not limiter.hit_now("a", PER_MINUTE).allowed
    assert limiter.hit_now("b", PER_MINUTE).allowed


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        MemoryLimiter(0)


# ---------------------------------------------------------------- Redis: one budget for several processes


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix for this test alone; its keys are deleted afterwards."""
    name = f"arcana-test:ratelimit:{uuid.uuid4().hex}:"
    yield name
    keys = list(redis_client.scan_iter(match=name + "*"))
    if keys:
        redis_client.delete(*keys)


def test_two_redis_limiters_share_one_budget(prefix: str, redis_client: redis.Redis) -> None:
    async def main() -> list[Decision]:
        one, two = RedisLimiter.from_url(REDIS_URL, prefix), RedisLimiter.from_url(REDIS_URL, prefix)
        try:
            return [await limiter.hit("u-1", PER_MINUTE) for limiter in (one, two, one, two)]
        finally:
            await one.close()
            await two.close()

    decisions = asyncio.run(main())
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert 0 < decisions[-1].reset_s <= 60
    keys = list(redis_client.scan_iter(match=prefix + "*"))
    assert len(keys) == 1 and 0 < int(redis_client.pttl(keys[0])) <= 60_000  # the window expires by itself


def test_redis_keys_of_different_callers_are_separate(prefix: str) -> None:
    async def main() -> tuple[bool, bool]:
        limiter = RedisLimiter.from_url(REDIS_URL, prefix)
        try:
            for _ in range(3):
                await limiter.hit("alice", PER_MINUTE)
            return (await limiter.hit("alice", PER_MINUTE)).allowed, (await limiter.hit("bob", PER_MINUTE)).allowed
        finally:
            await limiter.close()

    assert asyncio.run(main()) == (False, True)


def _closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_redis_limiter_fails_closed_with_503_and_one_warning_while_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[ServiceUnavailable]:
        limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{_closed_port()}/0")
        refusals = []
        try:
            for _ in range(3):
                with pytest.raises(ServiceUnavailable) as refused:
                    await limiter.hit("u-1", Rate(1, 60))
                refusals.append(refused.value)
            return refusals
        finally:
            await limiter.close()

    with caplog.at_level(logging.WARNING, logger="arcana.ratelimit"):
        refusals = asyncio.run(main())
    assert all(r.retry_after == 1 and "rate limits cannot be checked" in r.message for r in refusals)
    assert len([r for r in caplog.records if "failing closed" in r.getMessage()]) == 1


def test_a_redis_limiter_configured_to_fail_open_lets_calls_through_while_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[Decision]:
        limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{_closed_port()}/0", fail_open=True)
        try:
            return [await limiter.hit("u-1", Rate(1, 60)) for _ in range(3)]
        finally:
            await limiter.close()

    with caplog.at_level(logging.WARNING, logger="arcana.ratelimit"):
        decisions = asyncio.run(main())
    assert all(d.allowed for d in decisions)
    assert len([r for r in caplog.records if "failing open" in r.getMessage()]) == 1


def test_build_limiter_passes_the_prefix_and_the_failure_mode_to_redis() -> None:
    limiter = build_limiter("redis", REDIS_URL, 10, prefix="p:", fail_open=True)
    assert isinstance(limiter, RedisLimiter) and limiter._prefix == "p:" and limiter._fail_open
    asyncio.run(limiter.close())
    assert isinstance(build_limiter("memory", REDIS_URL, 10), MemoryLimiter)


def test_a_flood_of_checks_opens_at_most_the_pools_connections_to_a_stuck_redis() -> None:
    """A Redis that accepts and never answers: every check fails closed, and the limiter holds at most 64 sockets."""
    open_now, most = 0, 0

    async def stuck(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            while await reader.read(4096):
                pass  # never answers
        finally:
            open_now -= 1
            writer.close()

    async def main() -> list[BaseException | Decision]:
        server = await asyncio.start_server(stuck, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        limiter = RedisLimiter.from_url(f"redis://127.0.0.1:{port}/0")
        try:
            return await asyncio.gather(
                *(limiter.hit(f"u-{i}", PER_MINUTE) for i in range(150)), return_exceptions=True
            )
        finally:
            await limiter.close()
            server.close()

    outcomes = asyncio.run(main())
    assert all(isinstance(o, ServiceUnavailable) for o in outcomes), {type(o).__name__ for o in outcomes}
    assert 0 < most <= ratelimit.REDIS_MAX_CONNECTIONS, most
