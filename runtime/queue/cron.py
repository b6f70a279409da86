"""Schedule timing: 5-field cron expressions and ``every`` periods, parsed once, evaluated in UTC.

A pure module (standard library only): the manifest validator parses with it,
the scheduler evaluates with it. Both kinds answer the same two questions::

    spec = parse_cron("*/15 9-17 * * mon-fri")
    spec.latest_at_or_before(now)   # the tick that is due now (a float, epoch seconds)
    spec.next_after(now)            # the one after it

Cron fields are ``minute hour day-of-month month day-of-week`` with ``*``,
lists ``1,2``, ranges ``1-5``, steps ``*/5``, ``1-30/2`` and ``5/15`` (from 5
to the field's end), month names ``jan``-``dec`` and day names ``sun``-``sat``
(day 0 and 7 are both Sunday). Day-of-month and day-of-week follow Vixie
cron: when both fields are restricted (neither starts with ``*``) a day
matches either one; otherwise it must match both. ``every`` ticks fall on
multiples of the period since the epoch, so every node computes the same ones.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

EVERY_RE = re.compile(r"^([1-9]\d{0,9})([smhd])$")
EVERY_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# The longest months can be, February counted in a leap year: a day-of-month no chosen month has never runs.
MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# A search steps at least to the next minute, hour, day or month boundary; valid specs recur within a
# few hundred days (Feb 29 on a given weekday: decades, still far below this), so a search this long
# means the expression never matches.
MAX_STEPS = 200_000
_MINUTE = timedelta(minutes=1)


class CronError(ValueError):
    """A schedule that cannot be parsed or never fires; ``str()`` names the field and the fix."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    # The first name stands for this number (month names start at 1).
    names_from: int = 0


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day-of-week", 0, 7, DAYS, 0),
)


@dataclass(frozen=True)
class CronSpec:
    """A parsed cron expression: the allowed values of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    # 0 = Sunday ... 6 = Saturday (7 is folded into 0).
    weekdays: frozenset[int]
    # Vixie cron's rule: both day fields restricted -> a day matches either; else both.
    days_either: bool

    def latest_at_or_before(self, t: float) -> float:
        """The latest matching minute at or before ``t`` (epoch seconds, UTC)."""
        at = _utc(math.floor(t / 60) * 60)
        for _ in range(MAX_STEPS):
            if at.month not in self.months:
                at = at.replace(day=1, hour=0, minute=0) - _MINUTE
            elif not self._day_matches(at):
                at = at.replace(hour=0, minute=0) - _MINUTE
            elif at.hour not in self.hours:
                at = at.replace(minute=0) - _MINUTE
            elif at.minute not in self.minutes:
                at -= _MINUTE
            else:
                return float(calendar.timegm(at.timetuple()))
        raise CronError(f"'{self.expression}' never matches")

    def next_after(self, t: float) -> float:
        """The first matching minute strictly after ``t`` (epoch seconds, UTC)."""
        at = _utc(math.floor(t / 60) * 60 + 60)
        for _ in range(MAX_STEPS):
            if at.month not in self.months:
                at = _next_month(at)
            elif not self._day_matches(at):
                at = at.replace(hour=0, minute=0) + timedelta(days=1)
            elif at.hour not in self.hours:
                at = at.replace(minute=0) + timedelta(hours=1)
            elif at.minute not in self.minutes:
                at += _MINUTE
            else:
                return float(calendar.timegm(at.timetuple()))
        raise CronError(f"'{self.expression}' never matches")

    def _day_matches(self, at: datetime) -> bool:
        by_date = at.day in self.days
        by_weekday = (at.weekday() + 1) % 7 in self.weekdays  # Python's Monday is 0; cron's Sunday is
        return (by_date or by_weekday) if self.days_either else (by_date and by_weekday)


@dataclass(frozen=True)
class EverySpec:
    """A fixed period; ticks on multiples of it since the epoch."""

    expression: str
    period_s: int

    def latest_at_or_before(self, t: float) -> float:
        return float(math.floor(t / self.period_s) * self.period_s)

    def next_after(self, t: float) -> float:
        return float((math.floor(t / self.period_s) + 1) * self.period_s)


Timing = CronSpec | EverySpec


def parse_every(text: str) -> EverySpec:
    """``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` -> EverySpec; CronError otherwise."""
    match = EVERY_RE.match(text.strip())
    if match is None:
        raise CronError(f"'{text}' is not a period; write a whole number and a unit s, m, h or d, e.g. \"30s\"")
    return EverySpec(text.strip(), int(match[1]) * EVERY_UNITS[match[2]])


def parse_cron(text: str) -> CronSpec:
    """A 5-field cron expression -> CronSpec; CronError naming the field (and its position) otherwise."""
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise CronError(f"'{text}' has {len(parts)} fields, not 5")
    values = [_parse_field(part, f, i + 1) for i, (part, f) in enumerate(zip(parts, FIELDS, strict=True))]
    minutes, hours, days, months, weekdays = values
    weekdays = frozenset(d % 7 for d in weekdays)
    days_either = not parts[2].startswith("*") and not parts[4].startswith("*")
    spec = CronSpec(" ".join(parts), minutes, hours, days, months, weekdays, days_either)
    if not days_either and not any(d <= MONTH_DAYS[m - 1] for m in months for d in days):
        raise CronError(f"'{spec.expression}' never runs: none of its months has any of its days of the month")
    return spec


def _parse_field(text: str, f: _Field, position: int) -> frozenset[int]:
    where = f"field {position} ({f.name})"
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item, f, where)
    return frozenset(values)


def _parse_item(item: str, f: _Field, where: str) -> set[int]:
    span, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not _digits(step_text) or int(step_text) == 0:
            raise CronError(f"{where}: step '{step_text}' in '{item}' must be a positive whole number")
        step = int(step_text)
    if span == "*":
        low, high = f.low, f.high
    elif "-" in span:
        start, _, end = span.partition("-")
        low, high = _value(start, f, where), _value(end, f, where)
        if low > high:
            raise CronError(f"{where}: range '{span}' runs backwards; write the smaller value first")
    else:
        low = _value(span, f, where)
        # "5/15": from 5 to the field's end; a lone value without a step is itself.
        high = f.high if slash else low
    return set(range(low, high + 1, step))


def _value(text: str, f: _Field, where: str) -> int:
    lowered = text.lower()
    if lowered in f.names:
        return f.names.index(lowered) + f.names_from
    if not _digits(text):
        hint = f", or a name {f.names[0]}-{f.names[-1]}" if f.names else ""
        raise CronError(f"{where}: '{text}' is not a number {f.low}-{f.high}{hint}")
    value = int(text)
    if not f.low <= value <= f.high:
        raise CronError(f"{where}: {value} is out of range {f.low}-{f.high}")
    return value


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _utc(t: float) -> datetime:
    """A naive datetime in UTC: its arithmetic has no DST to skip."""
    return datetime(1970, 1, 1) + timedelta(seconds=t)


def _next_month(at: datetime) -> datetime:
    first = at.replace(day=1, hour=0, minute=0)
    return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
