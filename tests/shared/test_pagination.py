"""Cursors: opaque to callers, and a hand-edited one is a 422 naming query.cursor, never a 500."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.errors import Invalid
from shared.pagination import decode_cursor, encode_cursor


def test_a_cursor_decodes_to_its_key_converted_part_by_part() -> None:
    at = dt.datetime(2027, 3, 1, 12, 30, tzinfo=dt.UTC)
    assert decode_cursor(encode_cursor(at.isoformat(), "id-9"), dt.datetime.fromisoformat, str) == [at, "id-9"]
    assert decode_cursor(encode_cursor(42), int) == [42]
    assert decode_cursor(encode_cursor("a", 1)) == ["a", 1]  # no shape: as stored
    assert decode_cursor(None, int) is None and decode_cursor("", int) is None


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor("x"),  # not an int
        encode_cursor(1, 2),  # one part too many
        encode_cursor(),  # none at all
        encode_cursor(None),  # null
        "not base64 at all %%%",
        "eyJhIjoxfQ",  # {"a":1}: JSON, not a list
    ],
)
def test_a_hand_made_cursor_is_a_422_naming_the_cursor(cursor: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode_cursor(cursor, int)
    assert caught.value.errors[0].field == "query.cursor"


def test_a_cursor_whose_date_does_not_parse_is_a_422() -> None:
    with pytest.raises(Invalid):
        decode_cursor(encode_cursor("2027-13-45", "id"), dt.datetime.fromisoformat, str)


@pytest.mark.parametrize(
    "cursor",
    [
        encode_cursor(10**30),  # beyond BIGINT: PostgreSQL would refuse the comparison
        encode_cursor(2**63),
        encode_cursor(1e308),  # a float that converts to a 309-digit int
        encode_cursor(float("inf")),
        encode_cursor(True),  # a bool is an int to Python, never to this API
        encode_cursor(-(2**63) - 1),  # parsed as a float that rounds into range: refused, not rounded
        "W" * 5000,  # longer than any cursor this API issues
    ],
)
def test_a_cursor_out_of_bigint_range_or_too_long_is_a_422(cursor: str) -> None:
    with pytest.raises(Invalid) as caught:
        decode_cursor(cursor, int)
    assert caught.value.errors[0].field == "query.cursor"
    assert decode_cursor(encode_cursor(2**63 - 1), int) == [2**63 - 1]


def test_a_deeply_nested_cursor_is_a_422_not_a_recursion_error(monkeypatch) -> None:
    import base64

    monkeypatch.setattr("shared.pagination.MAX_CURSOR", 10**6)  # past the length cap, the parser's own limit
    cursor = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    with pytest.raises(Invalid):
        decode_cursor(cursor, int)


def test_a_cursor_holding_a_lone_surrogate_is_a_422() -> None:
    import base64

    cursor = base64.urlsafe_b64encode(b'["\\ud800"]').decode()  # JSON text with the escape, as a client could make
    with pytest.raises(Invalid):
        decode_cursor(cursor, str)
    with pytest.raises(Invalid):
        decode_cursor(cursor)
