"""Periods and grains: the buckets a series is cut into, target periods, and query parameters.

A window is [start, end] in local dates of one IANA time zone, cut into day, week (ISO, from
Monday), month or quarter buckets; a target's period is "2027", "2027-Q1" or "2027-03". Pure
date arithmetic: no database, no HTTP.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.kpi.formula import KEY_RE
from shared.bounds import MAX_DATE, MIN_DATE, check_date
from shared.errors import Errors, Invalid

GRAINS = ("day", "week", "month", "quarter")
MAX_BUCKETS = 4000
MAX_GROUP_BY = 5
PERIOD_RE = re.compile(r"([0-9]{4})(?:-(Q[1-4]|[0-9]{2}))?")  # ASCII digits, matched whole (fullmatch)


@dataclass(frozen=True)
class Window:
    """[start, end] in local dates, cut into buckets; `starts[i]` labels bucket i."""

    start: dt.date
    end: dt.date
    grain: str
    tz: str
    starts: list[dt.date]

    @property
    def utc(self) -> bool:
        return self.tz in ("UTC", "Etc/UTC")

    def instant(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), ZoneInfo(self.tz)).astimezone(dt.UTC)


def grain_start(d: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return d
    if grain == "week":
        return d - dt.timedelta(days=d.weekday())
    if grain == "month":
        return d.replace(day=1)
    if grain == "quarter":
        return d.replace(month=(d.month - 1) // 3 * 3 + 1, day=1)
    raise Invalid.on("query.grain", f"must be one of {', '.join(GRAINS)}")


def next_start(d: dt.date, grain: str) -> dt.date:
    if grain == "day":
        return d + dt.timedelta(days=1)
    if grain == "week":
        return d + dt.timedelta(days=7)
    months = 1 if grain == "month" else 3
    m = d.month - 1 + months
    return dt.date(d.year + m // 12, m % 12 + 1, 1)


def window(start: dt.date, end: dt.date, grain: str, tz: str = "UTC") -> Window:
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
        return Window(start, end, grain, tz, [start])
    starts = [grain_start(start, grain)]
    while True:
        n = next_start(starts[-1], grain)
        if n > end:
            break
        starts.append(n)
        if len(starts) > MAX_BUCKETS:
            raise Invalid.on("query.grain", f"more than {MAX_BUCKETS} buckets; use a coarser grain")
    return Window(start, end, grain, tz, starts)


def parse_period(period: str, field_name: str = "period") -> tuple[dt.date, dt.date]:
    """ "2027", "2027-Q1" or "2027-03" -> first and last day; years within shared.bounds (1900-2999)."""
    m = PERIOD_RE.fullmatch(period or "")
    if not m:
        raise Invalid.on(field_name, f"{period!r} is not a period like 2027, 2027-Q1 or 2027-03")
    year, part = int(m.group(1)), m.group(2)
    if not MIN_DATE.year <= year <= MAX_DATE.year:
        raise Invalid.on(field_name, f"{period!r}: the year must lie between {MIN_DATE.year} and {MAX_DATE.year}")
    if part is None:
        return dt.date(year, 1, 1), dt.date(year, 12, 31)
    if part.startswith("Q"):
        first = dt.date(year, (int(part[1]) - 1) * 3 + 1, 1)
        return first, next_start(first, "quarter") - dt.timedelta(days=1)
    month = int(part)
    if not 1 <= month <= 12:
        raise Invalid.on(field_name, f"{period!r} has no month {month}")
    first = dt.date(year, month, 1)
    return first, next_start(first, "month") - dt.timedelta(days=1)


def period_label(start: dt.date, grain: str) -> str | None:
    """The target period a month or quarter bucket is ("2027-03", "2027-Q1"); None for other grains."""
    if grain == "month":
        return f"{start.year}-{start.month:02d}"
    if grain == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
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
