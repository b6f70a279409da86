"""The retry loop: backoff with jitter, bounded attempts and time, only for retryable errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from arcana.resilience import RetryPolicy, retry_call, retry_call_async


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _flaky(failures: list[Exception]) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    return calls, fn


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, Transient)


def test_the_delay_doubles_up_to_the_cap_less_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.1, max_delay_s=0.5, jitter=0.5)
    assert [policy.delay(n, rng=lambda: 0.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
    assert policy.delay(2, rng=lambda: 1.0) == pytest.approx(0.1)


def test_a_transient_error_is_retried_until_success() -> None:
    time = FakeTime()
    calls, fn = _flaky([Transient(), Transient()])
    policy = RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=1)
    result = retry_call(fn, policy, _transient, target="test", clock=time.clock, sleep=time.sleep, rng=lambda: 0)
    assert result == "ok"
    assert len(calls) == 3
    assert time.slept == [0.1, 0.2]


def test_attempts_are_bounded() -> None:
    time = FakeTime()
    calls, fn = _flaky([Transient()] * 5)
    with pytest.raises(Transient):
        retry_call(fn, RetryPolicy(max_attempts=2), _transient, target="test", clock=time.clock, sleep=time.sleep)
    assert len(calls) == 2


def test_an_error_not_safe_to_retry_is_raised_at_once() -> None:
    time = FakeTime()
    calls, fn = _flaky([Permanent()])
    with pytest.raises(Permanent):
        retry_call(fn, RetryPolicy(max_attempts=5), _transient, target="test", clock=time.clock, sleep=time.sleep)
    assert len(calls) == 1


def test_no_retry_waits_past_the_total_time() -> None:
    time = FakeTime()
    _, fn = _flaky([Transient()] * 10)
    policy = RetryPolicy(max_attempts=10, base_delay_s=1, max_delay_s=1, max_total_s=2.5, jitter=0)
    with pytest.raises(Transient):
        retry_call(fn, policy, _transient, target="test", clock=time.clock, sleep=time.sleep)
    assert time.slept == [1, 1]


def test_no_retry_waits_past_the_callers_deadline() -> None:
    time = FakeTime()
    calls, fn = _flaky([Transient()] * 10)
    policy = RetryPolicy(max_attempts=10, base_delay_s=1, max_delay_s=1, max_total_s=100, jitter=0)
    with pytest.raises(Transient):
        retry_call(fn, policy, _transient, target="test", deadline=1.5, clock=time.clock, sleep=time.sleep)
    assert len(calls) == 2


def test_the_async_loop_retries_the_same_way() -> None:
    attempts: list[int] = []

    async def fn() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise Transient()
        return 7

    policy = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.001)
    assert asyncio.run(retry_call_async(fn, policy, _transient, target="test")) == 7
    assert len(attempts) == 3


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"jitter": 2.0}, {"base_delay_s": 2.0, "max_delay_s": 1.0}])
def test_a_policy_out_of_range_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
