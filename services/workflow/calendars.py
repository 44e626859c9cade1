"""Business calendars: opening hours per weekday in an IANA time zone, minus public and closed days.

SLAs run on business time, so "8 business hours" from Friday 15:00 in Berlin ends on
Monday 15:00 (or Tuesday when Monday is a holiday). All arithmetic converts each
business interval to UTC once, so the DST changes shorten or lengthen the wall-clock
night but never a working hour.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from shared.bounds import MAX_DATE, check_date
from shared.errors import Errors

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ZERO = dt.timedelta(0)
# How far business-time arithmetic looks: an SLA must end, and a context deadline lie, within this
# many years of now. Every walk is day by day, so this also bounds what one computation costs.
HORIZON_YEARS = 10
HORIZON = dt.timedelta(days=HORIZON_YEARS * 366)
# A calendar closed for longer than this (closed dates and holidays on every opening day) is a mistake.
MAX_CLOSED_DAYS = 366
# Opening periods a weekday may have (after merging touching and overlapping ones): every walk over
# business time visits each period of each day, so 1,440 one-minute periods made a 10-year span
# cost 30 s of CPU and a gigabyte of cached intervals.
MAX_PERIODS = 8
# Each calendar caches the UTC intervals of the days it computed; it holds at most this many
# intervals (about 200 bytes each), so 8 periods a day still cover more than the HORIZON of days.
_CACHE_INTERVALS = 50_000


class CalendarError(ValueError):
    """The calendar cannot give the business time asked for within HORIZON."""


def _parse_clock(value: str) -> dt.timedelta:
    """'09:30' -> 9.5 h after midnight; '24:00' is allowed as the end of a day."""
    hh, sep, mm = value.partition(":")
    if not sep or not (hh + mm).isascii() or not hh.isdigit() or not mm.isdigit() or len(mm) != 2:
        raise ValueError(f"{value!r} is not HH:MM")
    h, m = int(hh), int(mm)
    if m > 59 or h > 24 or (h == 24 and m):
        raise ValueError(f"{value!r} is not a time of day")
    return dt.timedelta(hours=h, minutes=m)


Hours = dict[int, list[tuple[dt.timedelta, dt.timedelta]]]


def parse_hours(raw: object, errors: Errors, where: str = "hours", max_periods: int | None = MAX_PERIODS) -> Hours:
    """{"mon": ["09:00", "17:00"] or [["09:00", "12:00"], ["13:00", "17:00"]], ...} -> weekday -> intervals,
    sorted, with touching and overlapping periods merged; at most `max_periods` a weekday (None: any,
    for calendars stored before the limit)."""
    out: Hours = {}
    if not isinstance(raw, dict):
        errors.add(where, "must be an object of weekday -> [start, end]")
        return out
    for day, spans in raw.items():
        if day not in WEEKDAYS:
            errors.add(f"{where}.{day}", f"is not a weekday (use {', '.join(WEEKDAYS)})")
            continue
        if spans in (None, []):
            continue
        if isinstance(spans, list) and len(spans) == 2 and all(isinstance(s, str) for s in spans):
            spans = [spans]
        if not isinstance(spans, list) or not all(isinstance(s, list) and len(s) == 2 for s in spans):
            errors.add(f"{where}.{day}", 'must be ["HH:MM", "HH:MM"] or a list of such pairs')
            continue
        if max_periods is not None and len(spans) > max_periods:
            errors.add(f"{where}.{day}", f"has {len(spans)} opening periods; at most {max_periods} a day")
            continue
        intervals = []
        for i, (start, end) in enumerate(spans):
            try:
                a, b = _parse_clock(str(start)), _parse_clock(str(end))
            except ValueError as exc:
                errors.add(f"{where}.{day}[{i}]", str(exc))
                continue
            if b <= a:
                errors.add(f"{where}.{day}[{i}]", "must end after it starts")
                continue
            intervals.append((a, b))
        out[WEEKDAYS.index(day)] = _merged(intervals)
    if not any(out.values()) and not errors.items:
        errors.add(where, "the calendar must be open at least one weekday")
    return out


def _merged(intervals: list[tuple[dt.timedelta, dt.timedelta]]) -> list[tuple[dt.timedelta, dt.timedelta]]:
    """Sorted, with periods that touch or overlap joined: 09:00-12:00 and 12:00-17:00 are 09:00-17:00."""
    out: list[tuple[dt.timedelta, dt.timedelta]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def load_zone(name: str, errors: Errors, where: str = "timezone") -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(where, f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)")
        return None


def check_holidays(country: str | None, subdivision: str | None, errors: Errors, where: str = "holidays") -> None:
    if not country:
        if subdivision:
            errors.add(f"{where}.country", "is required when a subdivision is given")
        return
    try:
        holidays.country_holidays(country, subdiv=subdivision, years=2000)
    except NotImplementedError as exc:
        field_name = f"{where}.subdivision" if subdivision and "subdivision" in str(exc) else f"{where}.country"
        errors.add(field_name, str(exc))


@lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year).keys())


@dataclass(frozen=True)
class BusinessCalendar:
    """Immutable value: safe to cache and share between requests."""

    tz: ZoneInfo
    hours: Hours
    country: str | None = None
    subdivision: str | None = None
    closed_dates: frozenset[dt.date] = field(default_factory=frozenset)
    # local date -> its business intervals: an inbox recomputes the same days for every open task
    _days: dict[dt.date, list[tuple[dt.datetime, dt.datetime]]] = field(default_factory=dict, compare=False, repr=False)
    _cached: list[int] = field(default_factory=lambda: [0], compare=False, repr=False)  # intervals in _days

    @classmethod
    def build(
        cls,
        timezone: str,
        hours: object,
        country: str | None = None,
        subdivision: str | None = None,
        closed_dates: Iterable[str | dt.date] = (),
        *,
        max_periods: int | None = MAX_PERIODS,
    ) -> BusinessCalendar:
        """Validate every part and build; raises shared.errors.Invalid listing each bad field."""
        errors = Errors()
        tz = load_zone(timezone, errors)
        parsed = parse_hours(hours, errors, max_periods=max_periods)
        check_holidays(country, subdivision, errors)
        closed: set[dt.date] = set()
        for i, d in enumerate(closed_dates):
            try:
                day = d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d))
            except ValueError:
                errors.add(f"closed_dates[{i}]", f"{d!r} is not an ISO date (YYYY-MM-DD)")
                continue
            try:
                closed.add(check_date(day))
            except ValueError as exc:
                errors.add(f"closed_dates[{i}]", str(exc))
        errors.raise_if_any()
        assert tz is not None
        return cls(tz, parsed, country or None, subdivision or None, frozenset(closed))

    def is_closed(self, day: dt.date) -> bool:
        if day in self.closed_dates:
            return True
        return bool(self.country) and day in _public_holidays(self.country, self.subdivision, day.year)

    def intervals_on(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """The business intervals of one local date, as UTC instants (cached: the calendar never changes)."""
        out = self._days.get(day)
        if out is not None:
            return out
        out = []
        if not self.is_closed(day):
            midnight = dt.datetime.combine(day, dt.time(), tzinfo=self.tz)
            for start, end in self.hours.get(day.weekday(), []):
                a = _local(midnight, start, self.tz)
                b = _local(midnight, end, self.tz)
                if b > a:
                    out.append((a, b))
        if len(self._days) + self._cached[0] >= _CACHE_INTERVALS:  # a day costs an entry and its intervals
            self._days.clear()
            self._cached[0] = 0
        self._days[day] = out
        self._cached[0] += len(out)
        return out

    def longest_closure(self) -> tuple[dt.date, dt.date] | None:
        """The longest run of days without business hours that the closed dates (with the holidays
        around them) make, as (first, last) closed day; None when no closed date falls on an opening day."""
        open_days = {wd for wd, spans in self.hours.items() if spans}
        best: tuple[dt.date, dt.date] | None = None
        seen: set[dt.date] = set()
        for day in sorted(self.closed_dates):
            if day in seen or day.weekday() not in open_days:
                continue
            first = last = day
            while True:  # the opening days after `day` that are closed too; at most ~1,000 + holidays
                nxt = last + dt.timedelta(days=1)
                while nxt.weekday() not in open_days:
                    nxt += dt.timedelta(days=1)
                if nxt > MAX_DATE or not self.is_closed(nxt):
                    break
                seen.add(nxt)
                last = nxt
            prev = first - dt.timedelta(days=1)
            while prev.weekday() not in open_days:
                prev -= dt.timedelta(days=1)
            nxt = last + dt.timedelta(days=1)
            while nxt.weekday() not in open_days:
                nxt += dt.timedelta(days=1)
            run = (prev + dt.timedelta(days=1), nxt - dt.timedelta(days=1))
            if best is None or run[1] - run[0] > best[1] - best[0]:
                best = run
        return best

    def _intervals_from(self, instant: dt.datetime, last_day: dt.date) -> Iterator[tuple[dt.datetime, dt.datetime]]:
        """Business intervals that end after `instant`, in order (the first one clipped), through local `last_day`."""
        day = instant.astimezone(self.tz).date() - dt.timedelta(days=1)  # a late shift may cross midnight
        while day <= last_day:
            for a, b in self.intervals_on(day):
                if b > instant:
                    yield max(a, instant), b
            day += dt.timedelta(days=1)

    def add(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The instant when `duration` of business time has passed after `start`; CalendarError when that
        lies more than HORIZON ahead (too few opening hours for so long a duration)."""
        _aware(start)
        if duration < ZERO:
            raise ValueError("duration must not be negative")
        if duration == ZERO:
            return start
        left = duration
        for a, b in self._intervals_from(start, start.astimezone(self.tz).date() + HORIZON):
            span = b - a
            if span >= left:
                return (a + left).astimezone(dt.UTC)
            left -= span
        hours = round(duration.total_seconds() / 3600, 4)
        raise CalendarError(f"{hours:g} business hours do not fit in the next {HORIZON_YEARS} years of this calendar")

    def between(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Business time from `start` to `end` (negative when `end` is earlier)."""
        _aware(start)
        _aware(end)
        if end < start:
            return -self.between(end, start)
        total = ZERO
        for a, b in self._intervals_from(start, end.astimezone(self.tz).date()):
            if a >= end:
                break
            total += min(b, end) - a
        return total


def _local(midnight: dt.datetime, offset: dt.timedelta, tz: ZoneInfo) -> dt.datetime:
    """Local wall-clock time `offset` after local midnight, as UTC (wall-clock, not elapsed)."""
    naive = midnight.replace(tzinfo=None) + offset
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)


def _aware(value: dt.datetime) -> None:
    if value.tzinfo is None:
        raise ValueError("naive datetime given; business time needs timezone-aware instants")


def to_hours(delta: dt.timedelta) -> float:
    return round(delta.total_seconds() / 3600, 4)
