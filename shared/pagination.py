"""Cursor pagination: an opaque cursor holding the last row's sort key."""

from __future__ import annotations

import base64
import json
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


def decode_cursor(cursor: str | None) -> list[Any] | None:
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, json.JSONDecodeError) as exc:
        raise Invalid.on("query.cursor", "is not a cursor this API issued") from exc
    if not isinstance(value, list):
        raise Invalid.on("query.cursor", "is not a cursor this API issued")
    return value


def page_of(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Given up to limit+1 rows, return the page and the cursor to the next one."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key(rows[-1]))
    return rows, None
