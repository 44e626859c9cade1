"""What dates, instants and counts the API takes: bounded where a column or date arithmetic ends.

Why: Python's dates stop at year 9999 and INTEGER columns at 2**31 - 1, and the services do
arithmetic on what they take (a deadline plus a day, a contract end less its notice, a window to
the next month). A value near those ends passed validation and failed deeper down as a 500, or was
stored and broke every later read. No marketing plan, contract or event lies outside 1900-2999, so
the API refuses anything outside that with a 422 naming the field.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from shared.errors import Invalid

MIN_DATE = dt.date(1900, 1, 1)
MAX_DATE = dt.date(2999, 12, 31)
INT32_MAX = 2**31 - 1  # the largest INTEGER column value on PostgreSQL
RANGE_TEXT = f"between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}"


def check_date(value: dt.date) -> dt.date:
    """A date (or the calendar day of a datetime, in its own offset) within MIN_DATE..MAX_DATE."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if not MIN_DATE <= day <= MAX_DATE:
        raise ValueError(f"must lie {RANGE_TEXT}")
    return value


def check_instant(value: dt.datetime) -> dt.datetime:
    """An aware datetime within the bounds; naive ones are refused (whose clock would they be on?)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("needs a UTC offset, e.g. 2027-03-01T09:00:00Z")
    check_date(value)
    return value


def within(value: dt.date, field: str) -> dt.date:
    """check_date for values parsed by hand (query strings): a 422 naming `field`."""
    try:
        return check_date(value)
    except ValueError as exc:
        raise Invalid.on(field, str(exc)) from exc


Day = Annotated[dt.date, AfterValidator(check_date)]
Instant = Annotated[AwareDatetime, AfterValidator(check_instant)]
Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Version = Annotated[int, Field(ge=1, le=INT32_MAX)]
