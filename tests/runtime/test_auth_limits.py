"""Failed-login windows: a key is blocked after its limit, others are not, success clears it, memory is bounded."""

from __future__ import annotations

import tracemalloc

from arcana.auth.limits import FailureWindow, address_key


def test_blocks_after_the_limit_and_only_that_key() -> None:
    window = FailureWindow(limit=3, window_s=60)
    for _ in range(2):
        window.fail("10.0.0.1")
    assert window.blocked_for("10.0.0.1") == 0
    window.fail("10.0.0.1")
    assert 59 < window.blocked_for("10.0.0.1") <= 60
    assert window.blocked_for("10.0.0.2") == 0


def test_failures_age_out_of_the_window() -> None:
    window = FailureWindow(limit=1, window_s=0.0)
    window.fail("a")
    assert window.blocked_for("a") == 0


def test_clear_forgets_a_key() -> None:
    window = FailureWindow(limit=1, window_s=60)
    window.fail("a")
    window.clear("a")
    assert window.blocked_for("a") == 0


def test_a_spray_of_distinct_keys_keeps_the_tracker_at_its_bound() -> None:
    window = FailureWindow(limit=5, window_s=300, max_keys=1000)
    for i in range(5000):
        window.fail(f"spray-{i}@example.com")
        assert len(window) <= 1000
    assert len(window) == 1000
    assert window.blocked_for("spray-4999@example.com") == 0  # counted, one failure of five


def test_tracker_memory_is_bounded_by_its_keys_not_by_what_arrives() -> None:
    """Before: every failed email was kept whole (1 MB emails: 1 MB each). Now a digest and the last `limit` times."""
    window = FailureWindow(limit=20, window_s=300, max_keys=2000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(4000):
            key = f"{i:06d}" + "x" * 10_000
            for _ in range(20):
                window.fail(key)
        per_key = (tracemalloc.get_traced_memory()[0] - before) / len(window)
    finally:
        tracemalloc.stop()
    # The documented bound is ~420 bytes per key at limit 20 (config/default.yaml, login_tracker_max_keys).
    assert len(window) == 2000 and per_key < 600


def test_when_full_the_key_that_failed_least_recently_is_evicted() -> None:
    window = FailureWindow(limit=2, window_s=300, max_keys=3)
    for key in ("old", "victim", "other"):
        window.fail(key)
    window.fail("victim")  # the victim failed again: now the most recent
    window.fail("newcomer")
    assert window.blocked_for("victim") > 0  # its count survived the eviction
    window.fail("old")  # evicted before, so this is its first failure again
    assert window.blocked_for("old") == 0


def test_expired_windows_are_dropped_before_any_live_key_is_evicted() -> None:
    window = FailureWindow(limit=1, window_s=0.0, max_keys=10)
    for i in range(100):
        window.fail(f"k{i}")
    assert len(window) == 1  # each failure ran out at once: only the newest is still held


def test_a_zero_limit_turns_the_check_off() -> None:
    window = FailureWindow(limit=0, window_s=60)
    window.fail("a")
    assert window.blocked_for("a") == 0 and len(window) == 0


def test_addresses_count_per_client_whichever_edge_names_them() -> None:
    assert address_key("ipv4:10.1.2.3") == address_key("10.1.2.3") == "10.1.2.3"
    assert address_key("ipv6:[2001:db8:1:2::7]") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_key("unknown") == "unknown" and len(address_key("x" * 10_000)) == 64
