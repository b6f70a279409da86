"""Cron expressions and ``every`` periods: parsing, the ticks they give in UTC, and the errors that name the field."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arcana.queue.cron import CronError, parse_cron, parse_every
from fuzzing import fuzz_settings


def ts(text: str) -> float:
    """'2024-02-29 03:00' (UTC) -> epoch seconds."""
    return float(calendar.timegm(datetime.strptime(text, "%Y-%m-%d %H:%M").timetuple()))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("expression", "now", "latest", "following"),
    [
        ("*/5 * * * *", "2026-12-02 09:07", "2026-12-02 09:05", "2026-12-02 09:10"),
        ("0 3 * * *", "2026-12-02 02:59", "2026-12-01 03:00", "2026-12-02 03:00"),
        ("0 3 * * *", "2026-12-02 03:00", "2026-12-02 03:00", "2026-12-03 03:00"),
        ("1-30/2 * * * *", "2026-12-02 09:31", "2026-12-02 09:29", "2026-12-02 10:01"),
        ("5/15 * * * *", "2026-12-02 09:00", "2026-12-02 08:50", "2026-12-02 09:05"),
        ("0,30 8-9 * * *", "2026-12-02 12:00", "2026-12-02 09:30", "2026-12-03 08:00"),
        # Month ends: the 31st skips the months without one.
        ("0 0 31 * *", "2026-04-15 00:00", "2026-03-31 00:00", "2026-05-31 00:00"),
        # Leap years: Feb 29 comes every four years (and 2100 is not one).
        ("0 0 29 2 *", "2026-12-02 00:00", "2024-02-29 00:00", "2028-02-29 00:00"),
        ("0 0 29 feb *", "2097-01-01 00:00", "2096-02-29 00:00", "2104-02-29 00:00"),
        # Year boundary, backwards and forwards.
        ("59 23 31 12 *", "2027-01-01 00:00", "2026-12-31 23:59", "2027-12-31 23:59"),
        # Names, any case; 7 and 0 are both Sunday. 2026-12-02 is a Wednesday.
        ("0 9 * * mon-fri", "2026-12-05 12:00", "2026-12-04 09:00", "2026-12-07 09:00"),
        ("0 9 * * SUN", "2026-12-02 00:00", "2026-11-29 09:00", "2026-12-06 09:00"),
        ("0 9 * * 7", "2026-12-02 00:00", "2026-11-29 09:00", "2026-12-06 09:00"),
        ("0 0 1 jan,jul *", "2026-12-02 00:00", "2026-07-01 00:00", "2027-01-01 00:00"),
        # Both day fields restricted: either matches (Vixie). The 13th or any Friday.
        ("0 0 13 * fri", "2026-12-02 00:00", "2026-11-27 00:00", "2026-12-04 00:00"),
        ("0 0 13 * fri", "2026-12-13 12:00", "2026-12-13 00:00", "2026-12-18 00:00"),
        # One of them starts with '*': both must match. Odd days that are Mondays.
        ("0 0 */2 * mon", "2026-12-02 00:00", "2026-11-23 00:00", "2026-12-07 00:00"),
    ],
)
def test_cron_gives_the_latest_and_the_next_tick_in_utc(expression: str, now: str, latest: str, following: str) -> None:
    spec = parse_cron(expression)
    assert iso(spec.latest_at_or_before(ts(now))) == latest
    assert iso(spec.next_after(ts(now))) == following


def test_a_time_inside_a_minute_belongs_to_that_minute() -> None:
    spec = parse_cron("* * * * *")
    t = ts("2026-12-02 09:07") + 59.9
    assert spec.latest_at_or_before(t) == ts("2026-12-02 09:07")
    assert spec.next_after(t) == ts("2026-12-02 09:08")


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields, not 5"),
        ("60 * * * *", "field 1 (minute): 60 is out of range 0-59"),
        ("* 24 * * *", "field 2 (hour): 24 is out of range 0-23"),
        ("* * 0 * *", "field 3 (day-of-month): 0 is out of range 1-31"),
        ("* * * foo *", "field 4 (month): 'foo' is not a number 1-12, or a name jan-dec"),
        ("* * * * 8", "field 5 (day-of-week): 8 is out of range 0-7"),
        ("*/0 * * * *", "field 1 (minute): step '0' in '*/0' must be a positive whole number"),
        ("* 5-1 * * *", "field 2 (hour): range '5-1' runs backwards"),
        ("1,,2 * * * *", "field 1 (minute): '' is not a number 0-59"),
        ("\u00b2 * * * *", "field 1 (minute): '\u00b2' is not a number 0-59"),
        ("0 0 31 2 *", "never runs"),
        ("0 0 31 4,6,9,11 *", "never runs"),
    ],
)
def test_a_bad_cron_names_the_field_and_its_position(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=re.escape(message)):
        parse_cron(expression)


def test_every_ticks_on_multiples_of_the_period_since_the_epoch() -> None:
    spec = parse_every("5m")
    assert spec.period_s == 300
    assert spec.latest_at_or_before(ts("2026-12-02 09:07") + 13) == ts("2026-12-02 09:05")
    assert spec.next_after(ts("2026-12-02 09:05")) == ts("2026-12-02 09:10")
    assert [parse_every(t).period_s for t in ("30s", "2h", "1d")] == [30, 7200, 86_400]


@pytest.mark.parametrize("text", ["0s", "5", "1.5m", "5 m", "-1s", "1w", "", "m"])
def test_a_bad_period_is_refused_with_the_format(text: str) -> None:
    with pytest.raises(CronError, match="write a whole number and a unit s, m, h or d"):
        parse_every(text)


def _oracle(fields: tuple[set[int], set[int], set[int], set[int], set[int]], either: bool, at: datetime) -> bool:
    """Vixie's rule written directly: the definition the fast search must agree with."""
    minutes, hours, days, months, weekdays = fields
    by_date, by_weekday = at.day in days, at.isoweekday() % 7 in weekdays
    day_ok = (by_date or by_weekday) if either else (by_date and by_weekday)
    return at.minute in minutes and at.hour in hours and at.month in months and day_ok


@fuzz_settings(150)
@given(
    minute=st.sampled_from(["*", "*/7", "0", "15,45", "10-20/5"]),
    hour=st.sampled_from(["*", "*/5", "3", "22-23"]),
    day=st.sampled_from(["*", "1", "*/10", "28-31", "15"]),
    weekday=st.sampled_from(["*", "0", "mon-fri", "*/3", "sat"]),
    start=st.integers(min_value=ts("1999-12-20 00:00"), max_value=ts("2101-01-10 00:00")),
)
def test_ticks_agree_with_the_rule_minute_by_minute(minute: str, hour: str, day: str, weekday: str, start: int) -> None:
    spec = parse_cron(f"{minute} {hour} {day} * {weekday}")
    fields = (spec.minutes, spec.hours, spec.days, spec.months, spec.weekdays)
    following = spec.next_after(start)
    latest = spec.latest_at_or_before(start)
    assert latest <= start < following
    for t in (latest, following):
        assert _oracle(fields, spec.days_either, datetime(1970, 1, 1) + timedelta(seconds=t))
    # Nothing matches strictly between them (checked over at most two days of minutes from each end).
    at = datetime(1970, 1, 1) + timedelta(seconds=latest + 60)
    for _ in range(min(2 * 1440, int(following - latest) // 60 - 1)):
        assert not _oracle(fields, spec.days_either, at)
        at += timedelta(minutes=1)
