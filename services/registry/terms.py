"""A contract term's dates and money: pure rules, no database.

A term runs from `start` to `end`, both included; its `cost` is per billing period. The
figures budget commits (the whole term) and reports show (a year) are exact in minor units.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import Decimal
from fractions import Fraction

from shared.bounds import MAX_DATE, MIN_DATE, RANGE_TEXT
from shared.errors import Errors, Invalid
from shared.money import MAX_MINOR, fmt, to_minor

PERIOD_MONTHS = {"monthly": 1, "quarterly": 3, "annual": 12}


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` plus whole months, clamped to the month's last day (Jan 31 + 1 month = Feb 28/29)."""
    years, month0 = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month0 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def term_span(start: dt.date, end: dt.date) -> tuple[int, int]:
    """The inclusive term start..end as whole months plus leftover days."""
    stop = end + dt.timedelta(days=1)
    months = (stop.year - start.year) * 12 + stop.month - start.month
    while months > 0 and add_months(start, months) > stop:
        months -= 1
    return months, (stop - add_months(start, months)).days


def next_term(
    start: dt.date, end: dt.date, *, new_start: dt.date | None = None, new_end: dt.date | None = None
) -> tuple[dt.date, dt.date]:
    """The dates of the term after start..end: by default it starts the day after and lasts as long
    (the same whole months, or the same number of days when the term is not whole months)."""
    first = new_start or end + dt.timedelta(days=1)
    if new_end is not None:
        return first, new_end
    months, days = term_span(start, end)
    if days == 0:
        return first, add_months(first, months) - dt.timedelta(days=1)
    return first, first + (end - start)


def annual_minor(cost_minor: int, billing_period: str) -> int:
    """Cost per billing period -> cost per year (exact: 12 is a multiple of every period)."""
    return cost_minor * 12 // PERIOD_MONTHS[billing_period]


def commit_minor(cost_minor: int, billing_period: str, start: dt.date, end: dt.date) -> int:
    """The cost of the whole term: whole months at the period rate, leftover days pro rata (365-day
    year), computed as an exact fraction and rounded once, half to even."""
    months, days = term_span(start, end)
    period = PERIOD_MONTHS[billing_period]
    exact = Fraction(cost_minor * months, period) + Fraction(cost_minor * 12 * days, period * 365)
    return round(exact)


def notice_deadline(end: dt.date, notice_days: int) -> dt.date:
    """The last day notice can be given."""
    return end - dt.timedelta(days=notice_days)


def check_term(
    errors: Errors,
    *,
    start: dt.date,
    end: dt.date,
    billing_period: str,
    cost: Decimal,
    currency: str,
    notice_days: int,
) -> int | None:
    """Check a term (also one a renewal computed) into `errors`; its cost in minor units, or None when
    the cost itself is bad. Its dates stay within shared.bounds, so the deadline and the next term can
    be computed; its amounts stay below MAX_MINOR, so they fit their BIGINT columns and budget can
    commit them."""
    dates_ok = True
    for field, day in (("start", start), ("end", end)):
        if not MIN_DATE <= day <= MAX_DATE:
            errors.add(field, f"{day.isoformat()} is out of range: a term must lie {RANGE_TEXT}", "out_of_range")
            dates_ok = False
    if end <= start:
        errors.add("end", f"{end.isoformat()} is not after the start {start.isoformat()}", "end_before_start")
        dates_ok = False
    elif dates_ok and end - dt.timedelta(days=notice_days) < MIN_DATE:
        errors.add(
            "notice_days",
            f"the notice deadline, {notice_days} days before the end, would fall before {MIN_DATE.isoformat()}",
            "out_of_range",
        )
    try:
        cost_minor = to_minor(cost, currency, "cost")
    except Invalid as exc:
        errors.items.extend(exc.errors)
        return None
    yearly = annual_minor(cost_minor, billing_period)
    if dates_ok and max(yearly, commit_minor(cost_minor, billing_period, start, end)) >= MAX_MINOR:
        errors.add(
            "cost",
            f"the term's annual or total cost would be more than one amount may be (less than "
            f"{fmt(MAX_MINOR, currency)} {currency})",
            "out_of_range",
        )
    return cost_minor
