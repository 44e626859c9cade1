"""Periods and grains: the buckets a series is cut into, target periods, comparisons, query parameters.

A window is [start, end] in local dates of one IANA time zone, cut into day, week (ISO, from
Monday), month, quarter, fiscal quarter or fiscal year buckets; a period is "2027", "2027-Q1",
"2027-03", "FY2027" or "FY2027-Q1". A fiscal year begins on the first of the organisation's
fiscal-year start month and is named by the calendar year it ends in (start April: FY2027 is
2026-04-01 to 2027-03-31). Pure date arithmetic: no database, no HTTP.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.kpi.formula import KEY_RE
from shared.bounds import MAX_DATE, MIN_DATE, check_date
from shared.errors import Errors, Invalid

GRAINS = ("day", "week", "month", "quarter", "fiscal_quarter", "fiscal_year")
MONTHS = {"month": 1, "quarter": 3, "fiscal_quarter": 3, "fiscal_year": 12}  # month-based grains' lengths
COMPARISONS = ("previous_period", "last_year")
MAX_BUCKETS = 4000
MAX_GROUP_BY = 5
PERIOD_RE = re.compile(r"(FY)?([0-9]{4})(?:-(Q[1-4]|[0-9]{2}))?")  # ASCII digits, matched whole (fullmatch)


@dataclass(frozen=True)
class Window:
    """[start, end] in local dates, cut into buckets; `starts[i]` labels bucket i."""

    start: dt.date
    end: dt.date
    grain: str
    tz: str
    starts: list[dt.date]
    fiscal_start: int = 1

    @property
    def utc(self) -> bool:
        return self.tz in ("UTC", "Etc/UTC")

    def instant(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), ZoneInfo(self.tz)).astimezone(dt.UTC)


def add_months(d: dt.date, n: int) -> dt.date:
    """`d` moved by n calendar months; a day the target month lacks becomes its last day (03-31 - 1 = 02-28)."""
    year, month0 = divmod(d.year * 12 + d.month - 1 + n, 12)
    return dt.date(year, month0 + 1, min(d.day, calendar.monthrange(year, month0 + 1)[1]))


def grain_start(d: dt.date, grain: str, fiscal_start: int = 1) -> dt.date:
    if grain == "day":
        return d
    if grain == "week":
        return d - dt.timedelta(days=d.weekday())
    if grain in MONTHS:
        first = fiscal_start if grain.startswith("fiscal") else 1
        return add_months(d.replace(day=1), -((d.month - first) % MONTHS[grain]))
    raise Invalid.on("query.grain", f"must be one of {', '.join(GRAINS)}")


def next_start(d: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return d + dt.timedelta(days=1)
    if grain == "week":
        return d + dt.timedelta(days=7)
    return add_months(d, MONTHS[grain])


def fiscal_year(d: dt.date, fiscal_start: int) -> int:
    """The fiscal year `d` lies in, named by the calendar year it ends in."""
    return d.year + (1 if fiscal_start > 1 and d.month >= fiscal_start else 0)


def fiscal_quarter(d: dt.date, fiscal_start: int) -> int:
    return (d.month - fiscal_start) % 12 // 3 + 1


def shift(d: dt.date, grain: str, compare: str) -> dt.date:
    """`d` moved back one bucket (previous_period) or one year (last_year: 52 weeks for weeks, so
    weekdays line up; 12 months otherwise, so fiscal and calendar periods line up across years)."""
    if compare == "previous_period":
        if grain in ("day", "week"):
            return d - dt.timedelta(days=1 if grain == "day" else 7)
        return add_months(d, -MONTHS[grain])
    return d - dt.timedelta(days=364) if grain == "week" else add_months(d, -12)


def window(start: dt.date, end: dt.date, grain: str, tz: str = "UTC", fiscal_start: int = 1) -> Window:
    """The window's buckets; every broken query parameter (from, to, grain, tz) reported at once."""
    errs = Errors()
    if grain not in GRAINS and grain != "period":
        errs.add("query.grain", f"must be one of {', '.join(GRAINS)}")
    for name, day in (("query.from", start), ("query.to", end)):
        try:
            check_date(day)
        except ValueError as exc:
            errs.add(name, str(exc))
    if start > end:
        errs.add("query.from", f"{start} is after to ({end})")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        errs.add("query.tz", f"{tz!r} is not an IANA time zone such as Europe/Berlin")
    errs.raise_if_any()
    if grain == "period":
        return Window(start, end, grain, tz, [start], fiscal_start)
    starts = [grain_start(start, grain, fiscal_start)]
    while True:
        n = next_start(starts[-1], grain)
        if n > end:
            break
        starts.append(n)
        if len(starts) > MAX_BUCKETS:
            raise Invalid.on("query.grain", f"more than {MAX_BUCKETS} buckets; use a coarser grain")
    return Window(start, end, grain, tz, starts, fiscal_start)


@dataclass(frozen=True)
class Period:
    """A named period: its label, first and last day, length in months, and whether it is fiscal."""

    label: str
    first: dt.date
    last: dt.date
    months: int
    fiscal_start: int | None  # None: a calendar period

    def shifted(self, compare: str) -> Period:
        """The previous period of the same kind, or the same period a year earlier."""
        first = add_months(self.first, -(self.months if compare == "previous_period" else 12))
        last = add_months(first, self.months) - dt.timedelta(days=1)
        if self.fiscal_start is None:
            grain = {12: "year", 3: "quarter", 1: "month"}[self.months]
        else:
            grain = "fiscal_year" if self.months == 12 else "fiscal_quarter"
        label = period_label(first, grain, self.fiscal_start or 1)
        assert label is not None
        return Period(label, first, last, self.months, self.fiscal_start)


def named_period(period: str, field_name: str = "period", fiscal_start: int = 1) -> Period:
    """ "2027", "2027-Q1", "2027-03", "FY2027" or "FY2027-Q1"; its days within shared.bounds (1900-2999)."""
    m = PERIOD_RE.fullmatch(period or "")
    if not m or (m.group(1) and m.group(3) and not m.group(3).startswith("Q")):
        raise Invalid.on(field_name, f"{period!r} is not a period like 2027, 2027-Q1, 2027-03, FY2027 or FY2027-Q1")
    fy, year, part = bool(m.group(1)), int(m.group(2)), m.group(3)
    if not MIN_DATE.year <= year <= MAX_DATE.year:
        raise Invalid.on(field_name, f"{period!r}: the year must lie between {MIN_DATE.year} and {MAX_DATE.year}")
    months = 12 if part is None else 3 if part.startswith("Q") else 1
    if months == 1 and not 1 <= int(part) <= 12:
        raise Invalid.on(field_name, f"{period!r} has no month {int(part)}")
    if fy:
        first = dt.date(year - (1 if fiscal_start > 1 else 0), fiscal_start, 1)
    else:
        first = dt.date(year, 1 if months != 1 else int(part), 1)
    if months == 3:
        first = add_months(first, (int(part[1]) - 1) * 3)
    last = add_months(first, months) - dt.timedelta(days=1)
    for day in (first, last):
        try:
            check_date(day)
        except ValueError as exc:
            raise Invalid.on(field_name, f"{period!r}: {exc}") from None
    return Period(period, first, last, months, fiscal_start if fy else None)


def parse_period(period: str, field_name: str = "period", fiscal_start: int = 1) -> tuple[dt.date, dt.date]:
    """The period's first and last day (see `named_period`)."""
    p = named_period(period, field_name, fiscal_start)
    return p.first, p.last


def period_label(start: dt.date, grain: str, fiscal_start: int = 1) -> str | None:
    """The period a bucket is ("2027-03", "2027-Q1", "FY2027-Q1", "FY2027", "2027"); None for days and weeks."""
    if grain == "month":
        return f"{start.year}-{start.month:02d}"
    if grain == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if grain == "year":
        return f"{start.year}"
    if grain == "fiscal_quarter":
        return f"FY{fiscal_year(start, fiscal_start)}-Q{fiscal_quarter(start, fiscal_start)}"
    if grain == "fiscal_year":
        return f"FY{fiscal_year(start, fiscal_start)}"
    return None


def elapsed(start: dt.date, end: dt.date, now: dt.datetime) -> float:
    """The fraction (0 to 1) of the UTC days [start, end] that lies before `now`."""
    t0 = dt.datetime.combine(start, dt.time(), dt.UTC)
    t1 = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    return min(1.0, max(0.0, (now - t0) / (t1 - t0)))


def parse_filter(values: Sequence[str] | None, field_name: str = "query.filter") -> dict[str, set[str]]:
    """`region:EMEA,channel:search` (repeatable); several values of one dimension are OR'ed."""
    out: dict[str, set[str]] = {}
    for raw in values or ():
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            dim, sep, value = part.partition(":")
            if not sep or not KEY_RE.match(dim.strip()) or not value.strip():
                raise Invalid.on(field_name, f"{part!r} is not dimension:value (e.g. region:EMEA)")
            out.setdefault(dim.strip(), set()).add(value.strip())
    return out


def parse_group_by(values: Sequence[str] | None, field_name: str = "query.group_by") -> list[str]:
    """Dimension names, comma-separated or repeated, each once, at most MAX_GROUP_BY."""
    keys: list[str] = []
    for raw in values or ():
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            if not KEY_RE.match(part):
                raise Invalid.on(field_name, f"{part!r} is not a dimension name")
            if part not in keys:
                keys.append(part)
    if len(keys) > MAX_GROUP_BY:
        raise Invalid.on(field_name, f"at most {MAX_GROUP_BY} dimensions")
    return keys


def parse_compare(values: Sequence[str] | None, field_name: str = "query.compare") -> list[str]:
    """`previous_period,last_year` (comma-separated or repeated), each once, in the order given."""
    out: list[str] = []
    for raw in values or ():
        for part in raw.split(","):
            part = part.strip()
            if part and part not in COMPARISONS:
                raise Invalid.on(field_name, f"{part!r} is not one of {', '.join(COMPARISONS)}")
            if part and part not in out:
                out.append(part)
    return out
