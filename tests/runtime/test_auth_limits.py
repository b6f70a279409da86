"""Failed-login windows: a key is blocked after its limit, others are not, and success clears it."""

from __future__ import annotations

from arcana.auth.limits import FailureWindow


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
