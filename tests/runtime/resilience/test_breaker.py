"""The circuit breaker's state machine and the bounded board, on a fake clock."""

from __future__ import annotations

import pytest

from arcana.errors import ServiceUnavailable
from arcana.resilience import BreakerBoard, BreakerPolicy, BreakerState, CircuitBreaker
from queue_fakes import FakeClock


def _breaker(
    threshold: int = 3, cool_down: float = 10.0, probes: int = 1
) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock(100.0)
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        "p",
        BreakerPolicy(threshold, cool_down, probes),
        what="plugin 'p'",
        clock=clock,
        listener=lambda _n, old, new: changes.append((old.value, new.value)),
    )
    return breaker, clock, changes


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.admit().failure()


def test_consecutive_failures_open_the_breaker_and_it_refuses_with_retry_after() -> None:
    breaker, clock, changes = _breaker(threshold=3, cool_down=10)
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED
    _fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    assert changes == [("closed", "open")]
    clock.now += 2.5
    with pytest.raises(ServiceUnavailable) as refused:
        breaker.admit()
    assert refused.value.retry_after == 8  # the cool-down left, rounded up
    assert "plugin 'p'" in refused.value.message


def test_a_success_resets_the_failure_count() -> None:
    breaker, _, _ = _breaker(threshold=3)
    _fail(breaker, 2)
    breaker.admit().success()
    _fail(breaker, 2)
    assert breaker.state is BreakerState.CLOSED


def test_after_the_cool_down_one_probe_goes_through_and_its_success_closes() -> None:
    breaker, clock, changes = _breaker(threshold=1, cool_down=10)
    _fail(breaker, 1)
    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    probe = breaker.admit()
    with pytest.raises(ServiceUnavailable):
        breaker.admit()  # only one probe at a time
    probe.success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    breaker.admit().success()


def test_a_failed_probe_opens_the_breaker_for_another_cool_down() -> None:
    breaker, clock, changes = _breaker(threshold=1, cool_down=10)
    _fail(breaker, 1)
    clock.now += 11
    breaker.admit().failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == 10
    assert changes[-1] == ("half_open", "open")


def test_several_probes_must_all_succeed_to_close() -> None:
    breaker, clock, _ = _breaker(threshold=1, cool_down=1, probes=2)
    _fail(breaker, 1)
    clock.now += 1
    first, second = breaker.admit(), breaker.admit()
    first.success()
    assert breaker.state is BreakerState.HALF_OPEN
    second.success()
    assert breaker.state is BreakerState.CLOSED


def test_a_released_probe_frees_its_slot_without_deciding() -> None:
    breaker, clock, _ = _breaker(threshold=1, cool_down=5)
    _fail(breaker, 1)
    clock.now += 5
    breaker.admit().release()
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.admit().success()
    assert breaker.state is BreakerState.CLOSED


def test_a_probe_never_settled_stops_blocking_after_a_cool_down() -> None:
    breaker, clock, _ = _breaker(threshold=1, cool_down=5)
    _fail(breaker, 1)
    clock.now += 5
    breaker.admit()  # lost: never settled
    with pytest.raises(ServiceUnavailable):
        breaker.admit()
    clock.now += 5.1
    breaker.admit().success()
    assert breaker.state is BreakerState.CLOSED


def test_settling_a_permit_twice_counts_once() -> None:
    breaker, _, _ = _breaker(threshold=2)
    permit = breaker.admit()
    permit.failure()
    permit.failure()
    assert breaker.state is BreakerState.CLOSED


def test_a_call_admitted_before_opening_does_not_close_an_open_breaker() -> None:
    breaker, _, _ = _breaker(threshold=1)
    late = breaker.admit()
    _fail(breaker, 1)
    late.success()
    assert breaker.state is BreakerState.OPEN


def test_a_listener_that_raises_does_not_break_the_call() -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker("x", BreakerPolicy(1, 1, 1), listener=boom)
    breaker.admit().failure()
    assert breaker.state is BreakerState.OPEN


def test_the_board_is_bounded_and_forgets_closed_breakers_before_open_ones() -> None:
    clock = FakeClock(100.0)
    board = BreakerBoard("http", BreakerPolicy(1, 60, 1), max_breakers=3, clock=clock)
    board.get("a").admit().failure()  # open
    for name in ("b", "c", "d", "e"):
        board.get(name)
    assert len(board) == 3
    assert board.states()["a"] is BreakerState.OPEN


def test_the_board_reports_state_changes_with_its_kind() -> None:
    seen: list[tuple[str, str, str]] = []
    board = BreakerBoard(
        "backend", BreakerPolicy(1, 1, 1), listener=lambda k, n, _o, new: seen.append((k, n, new.value))
    )
    board.get("database").admit().failure()
    assert seen == [("backend", "database", "open")]


def test_a_new_policy_for_a_name_replaces_its_breaker() -> None:
    board = BreakerBoard("plugin", BreakerPolicy(5, 10, 1))
    first = board.get("notes")
    assert board.get("notes") is first
    assert board.get("notes", BreakerPolicy(2, 10, 1)) is not first


@pytest.mark.parametrize(
    ("threshold", "cool_down", "probes"), [(0, 1.0, 1), (1, 0.0, 1), (1, 1.0, 0), (1, 100_000.0, 1)]
)
def test_a_policy_out_of_range_is_refused(threshold: int, cool_down: float, probes: int) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(threshold, cool_down, probes)


def test_a_probe_from_an_earlier_half_open_round_decides_nothing_in_a_later_one() -> None:
    breaker, clock, _ = _breaker(threshold=1, cool_down=5, probes=1)
    _fail(breaker, 1)
    clock.now += 5
    slow = breaker.admit()  # round 1's probe, slow
    clock.now += 5.1  # counted as lost: round 1 lets another probe through
    breaker.admit().failure()  # opens again
    clock.now += 5
    current = breaker.admit()  # round 2's probe
    slow.success()
    assert breaker.state is BreakerState.HALF_OPEN
    current.success()
    assert breaker.state is BreakerState.CLOSED


def test_each_probe_settles_its_own_slot() -> None:
    breaker, clock, _ = _breaker(threshold=1, cool_down=5, probes=2)
    _fail(breaker, 1)
    clock.now += 5
    breaker.admit()  # the first probe: lost
    clock.now += 1
    breaker.admit().release()  # the second frees its own slot, not the first's
    breaker.admit()  # the third, in flight
    with pytest.raises(ServiceUnavailable):
        breaker.admit()
    clock.now += 4.5  # the first is now older than the cool-down: only the third still holds a slot
    breaker.admit()
