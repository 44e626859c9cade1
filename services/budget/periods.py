"""A plan's calendar: its twelve periods (YYYY-MM of its fiscal year), the dates inside each,
and how much of a range of them has elapsed. Pure rules, no database."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Protocol

from shared.errors import Invalid

PERIOD_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])", re.ASCII)  # fullmatch: no trailing newline


class PlanYear(Protocol):
    """What the period rules need of a plan."""

    @property
    def name(self) -> str: ...
    @property
    def fiscal_year(self) -> int: ...


def periods_of(fiscal_year: int) -> list[str]:
    """A plan's periods: the twelve months of its fiscal year."""
    return [f"{fiscal_year}-{m:02d}" for m in range(1, 13)]


def check_period(plan: PlanYear, period: object, field_name: str = "period") -> str:
    """`period` as a period of `plan`, or Invalid naming `field_name`."""
    if not isinstance(period, str) or not PERIOD_RE.fullmatch(period):
        raise Invalid.on(field_name, f"{period!r} is not a period; use YYYY-MM such as {plan.fiscal_year}-03")
    if int(period[:4]) != plan.fiscal_year:
        raise Invalid.on(field_name, f"{period} is outside plan {plan.name!r} (fiscal year {plan.fiscal_year})")
    return period


def period_range(plan: PlanYear, start: str | None, end: str | None) -> tuple[str, str]:
    """The `from`/`to` query of a read: the whole fiscal year unless narrowed."""
    start = check_period(plan, start, "query.from") if start else f"{plan.fiscal_year}-01"
    end = check_period(plan, end, "query.to") if end else f"{plan.fiscal_year}-12"
    if start > end:
        raise Invalid.on("query.from", f"{start} is after to={end}")
    return start, end


def period_bounds(period: str) -> tuple[dt.date, dt.date]:
    """The first and the last day of a period."""
    year, month = int(period[:4]), int(period[5:7])
    first = dt.date(year, month, 1)
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - dt.timedelta(days=1)


def entry_date(period: str, date: dt.date | None) -> dt.date:
    """The date an entry is booked on: the first day of its period unless given, and inside it."""
    first, last = period_bounds(period)
    if date is None:
        return first
    if not first <= date <= last:
        raise Invalid.on("date", f"{date.isoformat()} is not in period {period}")
    return date


def elapsed_share(start: str, end: str, today: dt.date) -> Decimal:
    """How much of the periods `start`..`end` has passed on `today` (0 to 1, 4 decimals)."""
    first, _ = period_bounds(start)
    _, last = period_bounds(end)
    total = (last - first).days + 1
    done = min(max((today - first).days + 1, 0), total)
    return (Decimal(done) / Decimal(total)).quantize(Decimal("0.0001"))
