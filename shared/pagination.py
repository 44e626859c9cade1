"""Cursor pagination: an opaque cursor holding the last row's sort key."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from shared.errors import Invalid

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), default=str, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, *shape: Callable[[Any], Any]) -> list[Any] | None:
    """The sort key a cursor holds. With `shape` (one converter per part, e.g. `int`, `str`,
    `dt.date.fromisoformat`) the key must have exactly those parts and each must convert: a cursor
    that was edited by hand is a 422 naming `query.cursor`, never an error deeper down."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise Invalid.on("query.cursor", "is not a cursor this API issued") from exc
    if not isinstance(value, list) or (shape and len(value) != len(shape)):
        raise Invalid.on("query.cursor", "is not a cursor this API issued")
    if shape:
        try:
            value = [convert(part) for convert, part in zip(shape, value, strict=True)]
        except (TypeError, ValueError, OverflowError) as exc:
            raise Invalid.on("query.cursor", "is not a cursor this API issued") from exc
    return value


def page_of(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Given up to limit+1 rows, return the page and the cursor to the next one."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key(rows[-1]))
    return rows, None
