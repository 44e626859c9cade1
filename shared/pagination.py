"""Cursor pagination: an opaque cursor holding the last row's sort key."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel

from shared.bounds import check_instant
from shared.errors import Invalid

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_CURSOR = 1024  # characters; the longest key this API encodes is a few hundred
INT64 = range(-(2**63), 2**63)  # what a BIGINT column can compare with


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *shape: Callable[[Any], Any]) -> list[Any] | None:
    """The sort key a cursor holds. With `shape` (one converter per part, e.g. `int`, `str`,
    `dt.date.fromisoformat`) the key must have exactly those parts and each must convert: a cursor
    that was edited by hand is a 422 naming `query.cursor`, never an error deeper down (an integer
    part must also fit the BIGINT it is compared with)."""
    if not cursor:
        return None
    if len(cursor) > MAX_CURSOR:
        raise _foreign()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = orjson.loads(base64.urlsafe_b64decode(padded.encode()))  # refuses lone surrogates
    except (ValueError, RecursionError) as exc:
        raise _foreign() from exc
    if not isinstance(value, list) or (shape and len(value) != len(shape)):
        raise _foreign()
    if shape:
        if any(convert is int and type(part) is not int for convert, part in zip(shape, value, strict=True)):
            raise _foreign()  # (a float, beyond 64 bits when parsed, or a bool: never what this API wrote)
        try:
            value = [convert(part) for convert, part in zip(shape, value, strict=True)]
        except (TypeError, ValueError, OverflowError) as exc:
            raise _foreign() from exc
        if any(isinstance(part, int) and part not in INT64 for part in value):
            raise _foreign()
    return value


def instant(part: str) -> dt.datetime:
    """A cursor's datetime part: ISO 8601 with an offset, inside shared.bounds (naive or out of range
    would fail only when bound to the query)."""
    return check_instant(dt.datetime.fromisoformat(part))


def _foreign() -> Invalid:
    return Invalid.on("query.cursor", "is not a cursor this API issued")


def page_of(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Given up to limit+1 rows, return the page and the cursor to the next one."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key(rows[-1]))
    return rows, None
