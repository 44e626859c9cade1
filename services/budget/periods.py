"""A plan's calendar: its twelve periods (calendar months, YYYY-MM), the dates inside each, the fiscal
quarters and the control period they fall in, and how much of a range of them has elapsed. Pure
rules, no database.

A fiscal year may start in any month (`fiscal_year_start`, 1-12); it is named by the calendar year
in which it ends: fiscal year 2027 starting in April runs 2026-04 to 2027-03. Its quarters are
three months each from its first month ("FY2027-Q1" is 2026-04..2026-06)."""

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
    @property
    def fiscal_year_start(self) -> int: ...


CONTROL_PERIODS = ("month", "quarter", "fiscal_year")


def periods_of(fiscal_year: int, start: int = 1) -> list[str]:
    """A plan's periods: the twelve months of its fiscal year (which ends in calendar year `fiscal_year`)."""
    year = fiscal_year if start == 1 else fiscal_year - 1
    out = []
    for i in range(12):
        m = start + i
        out.append(f"{year + (m - 1) // 12}-{(m - 1) % 12 + 1:02d}")
    return out


def fiscal_index(period: str, start: int) -> int:
    """The period's place in its fiscal year, 0 (the first month) to 11."""
    return (int(period[5:7]) - start) % 12


def fiscal_quarter(plan: PlanYear, period: str) -> str:
    """The fiscal quarter of one of the plan's periods, e.g. "FY2027-Q1"."""
    return f"FY{plan.fiscal_year}-Q{fiscal_index(period, plan.fiscal_year_start) // 3 + 1}"


def control_scope(plan: PlanYear, control_period: str, period: str) -> tuple[str, list[str]]:
    """The control period containing `period`: its name and its months (the overspend check's scope)."""
    if control_period == "month":
        return period, [period]
    months = periods_of(plan.fiscal_year, plan.fiscal_year_start)
    if control_period == "fiscal_year":
        return f"FY{plan.fiscal_year}", months
    q = fiscal_index(period, plan.fiscal_year_start) // 3
    return fiscal_quarter(plan, period), months[3 * q : 3 * q + 3]


def check_period(plan: PlanYear, period: object, field_name: str = "period") -> str:
    """`period` as a period of `plan`, or Invalid naming `field_name`."""
    if not isinstance(period, str) or not PERIOD_RE.fullmatch(period):
        raise Invalid.on(field_name, f"{period!r} is not a period; use YYYY-MM such as {plan.fiscal_year}-03")
    months = periods_of(plan.fiscal_year, plan.fiscal_year_start)
    if not months[0] <= period <= months[-1]:
        raise Invalid.on(
            field_name,
            f"{period} is outside plan {plan.name!r} (fiscal year {plan.fiscal_year}: {months[0]} to {months[-1]})",
        )
    return period


def period_range(plan: PlanYear, start: str | None, end: str | None) -> tuple[str, str]:
    """The `from`/`to` query of a read: the whole fiscal year unless narrowed."""
    months = periods_of(plan.fiscal_year, plan.fiscal_year_start)
    start = check_period(plan, start, "query.from") if start else months[0]
    end = check_period(plan, end, "query.to") if end else months[-1]
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
