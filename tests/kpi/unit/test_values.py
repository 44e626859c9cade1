"""Values: micro-units in the API's one decimal grammar, UTC day and month numbers, dimensions, answers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kpi import values


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("0", 0),
        ("-0", 0),
        ("12.5", 12_500_000),
        ("1250.00", 1_250_000_000),
        ("-0.000001", -1),
        ("1.50000000", 1_500_000),  # more decimals than 6, but exact
        ("9999999999.999999", 9_999_999_999_999_999),
    ],
)
def test_decimal_strings_are_exact_micro_units(text, micro):
    assert values.to_micro(text) == micro
    assert values.from_micro(micro) == Decimal(text)


@pytest.mark.parametrize(
    "text",
    ["1e5", "+5", ".5", "5.", " 5", "5 ", "1_000", "\u0663", "\uff11\uff10\uff10", "NaN", "Infinity", "", "-", "1,5"],
)
def test_a_string_outside_the_one_decimal_grammar_is_refused_naming_the_value(text):
    with pytest.raises(ValueError, match=r"^value .*decimal string"):
        values.to_micro(text)


@pytest.mark.parametrize("number", [5, 0, -3, 10**20])
def test_json_numbers_are_refused_even_whole_ones(number):
    with pytest.raises(ValueError, match="not a JSON number"):
        values.to_micro(number)


@pytest.mark.parametrize("value", [1.5, 2.0, float("nan"), True, None, [], {}])
def test_floats_booleans_and_other_types_are_refused(value):
    with pytest.raises(ValueError, match="^value"):
        values.to_micro(value)


@pytest.mark.parametrize(
    ("text", "why"),
    [("10000000000", "too large"), ("-10000000000.5", "too large"), ("0.0000001", "more than 6 decimal places")],
)
def test_range_and_precision_are_checked(text, why):
    with pytest.raises(ValueError, match=why):
        values.to_micro(text)
    assert values.fast_micro(text) is None


def test_a_decimal_a_schema_parsed_is_taken_as_it_is():
    assert values.to_micro(Decimal("40.00")) == 40_000_000


@given(st.one_of(st.from_regex(r"\A-?[0-9]{1,12}(\.[0-9]{1,8})?\Z"), st.text(max_size=8), st.integers()))
def test_the_fast_path_agrees_with_the_exact_one_whenever_it_answers(value):
    fast = values.fast_micro(value)
    if fast is not None:
        assert fast == values.to_micro(value)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (Decimal("12.5"), "currency", "12.50"),
        (Decimal("12"), "currency", "12.00"),
        (Decimal("0.1234565"), "percent", "0.123456"),  # half to even
        (Decimal("0.1234575"), "percent", "0.123458"),
        (Decimal("-0.0000001"), "count", "0"),  # no "-0"
        (None, "currency", None),
        (Decimal(10) ** 40, "count", None),  # past formula.MAX_RESULT: not exact any more
    ],
)
def test_answers_are_decimal_strings_with_at_most_6_decimals(value, unit, text):
    assert values.fmt(value, unit) == text


def test_day_and_month_numbers_are_utc():
    t = dt.datetime(2027, 3, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))  # still February in UTC
    assert values.date_of(values.day_number(t)) == dt.date(2027, 2, 28)
    assert values.month_number(t) == 2027 * 12 + 1
    assert values.day_of(dt.date(1970, 1, 2)) == 1 and values.month_of(dt.date(2027, 12, 31)) == 2027 * 12 + 11


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("2027-03-01T10:00:00", "no UTC offset"),
        ("yesterday", "not an ISO 8601"),
        ("1899-12-31T23:59:59Z", "must lie"),
        ("3000-01-01T00:00:00+01:00", "must lie"),
    ],
)
def test_times_need_an_offset_and_lie_within_the_bounds(text, why):
    with pytest.raises(ValueError, match=why):
        values.parse_time(text)


def test_a_time_is_stored_as_utc_text():
    t = values.parse_time("2027-03-01T12:00:00.5+01:00")
    assert values.time_text(t) == "2027-03-01 11:00:00.500000"
    assert values.iso_time_text("2027-03-01T11:00:00.500Z") == "2027-03-01 11:00:00.500000"
    assert values.iso_time_text("2027-03-01T12:00:00+01:00") is None  # not UTC: parsed the exact way


def test_dimensions_are_trimmed_sorted_and_hashed_stably():
    dims = values.canonical_dims({"region": " EMEA ", "channel": "search", "campaign": None, "year": 2027})
    assert list(dims.items()) == [("channel", "search"), ("region", "EMEA"), ("year", "2027")]
    assert values.dims_hash(dims) == values.dims_hash(dict(reversed(dims.items())))
    assert values.dims_hash(dims) != values.dims_hash({**dims, "region": "NA"})


@pytest.mark.parametrize(
    ("dims", "why"),
    [
        ("EMEA", "must be an object"),
        ({"Region": "EMEA"}, "lower-case"),
        ({"region": True}, "must be a string"),
        ({"region": 1.5}, "must be a string"),
        ({"region": " "}, "1 to 200 characters"),
        ({f"d{i}": "x" for i in range(21)}, "at most 20"),
    ],
)
def test_bad_dimensions_say_why(dims, why):
    with pytest.raises(ValueError, match=why):
        values.canonical_dims(dims)
