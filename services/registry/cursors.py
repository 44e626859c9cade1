"""Strict converters of cursor parts for `shared.pagination.decode_cursor`: an edited cursor is a
422, never a value coerced into a different key (`str` would take 7, `int` would take true)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.bounds import check_date


def text(part: Any) -> str:
    if not isinstance(part, str):
        raise TypeError("not a string")
    return part


def day(part: Any) -> dt.date:
    return check_date(dt.date.fromisoformat(text(part)))


def instant(part: Any) -> dt.datetime:
    value = dt.datetime.fromisoformat(text(part))
    if value.tzinfo is None:
        raise ValueError("an instant needs its offset")
    check_date(value)
    return value
