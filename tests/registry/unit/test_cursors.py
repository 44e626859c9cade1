"""Cursor parts are strict: an edited cursor is refused, never coerced into another key."""

from __future__ import annotations

import datetime as dt

import pytest

from services.registry import cursors
from shared.errors import Invalid
from shared.pagination import decode_cursor, encode_cursor


def test_a_cursor_this_api_wrote_reads_back():
    assert decode_cursor(encode_cursor("2027-03-01", "c-1"), cursors.day, cursors.text) == [dt.date(2027, 3, 1), "c-1"]


@pytest.mark.parametrize(
    "key",
    [(7, "c-1"), ("2027-03-01", 7), ("3000-01-01", "c"), ("yesterday", "c"), (True, "c"), ("2027-03-01",)],
)
def test_an_edited_cursor_is_a_422_on_the_cursor(key):
    with pytest.raises(Invalid) as refused:
        decode_cursor(encode_cursor(*key), cursors.day, cursors.text)
    assert [e.field for e in refused.value.errors] == ["query.cursor"]
