"""Money arithmetic: exact minor units, no floats, banker's rounding once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared import money
from shared.errors import Invalid


class Body(BaseModel):
    amount: money.DecimalStr
    currency: money.CurrencyCode


def test_decimal_strings_in_and_out_floats_refused():
    assert Body(amount="1250.00", currency="EUR").model_dump(mode="json") == {"amount": "1250.00", "currency": "EUR"}
    with pytest.raises(ValidationError, match="never as floating-point"):
        Body(amount=12.5, currency="EUR")
    with pytest.raises(ValidationError, match="ISO 4217"):
        Body(amount="1", currency="EURO")
    with pytest.raises(ValidationError, match="not a decimal"):
        Body(amount="12,50", currency="EUR")


def test_minor_units_respect_the_currency_exponent():
    assert money.to_minor(Decimal("1250.50"), "EUR") == 125050
    assert money.to_minor(Decimal("1250"), "JPY") == 1250
    assert money.to_minor(Decimal("1.234"), "KWD") == 1234
    with pytest.raises(Invalid, match="more than 2 decimal places"):
        money.to_minor(Decimal("1.005"), "EUR")
    with pytest.raises(Invalid, match="more than 0 decimal places"):
        money.to_minor(Decimal("1.5"), "JPY")
    assert money.fmt(125050, "EUR") == "1250.50" and money.fmt(-5, "USD") == "-0.05"


def test_conversion_rounds_half_to_even_once():
    assert money.convert(1, "EUR", "USD", Decimal("0.5")) == 0  # 0.005 -> 0.00
    assert money.convert(3, "EUR", "USD", Decimal("0.5")) == 2  # 0.015 -> 0.02
    assert money.convert(100, "EUR", "JPY", Decimal("162.5")) == 162  # 162.5 -> 162
    assert money.convert(100, "EUR", "EUR", Decimal("3")) == 100


@given(st.integers(min_value=-(10**15), max_value=10**15), st.sampled_from(["EUR", "JPY", "KWD", "CLF"]))
def test_minor_units_round_trip(minor, currency):
    assert money.to_minor(Decimal(money.fmt(minor, currency)), currency) == minor


@pytest.mark.parametrize(
    "text",
    [
        "１００",
        "٣",
        "1_000",
        " 100.00",
        "100.00 ",
        "+5",
        ".5",
        "5.",
        "1e5",
        "1E5",
        "NaN",
        "Infinity",
        "--5",
        "-",
        "",
        "0x10",
        "1,000.00",
        "5.0.0",
    ],
)
def test_one_grammar_for_amounts_refuses_every_other_spelling(text):
    with pytest.raises(ValidationError, match="ASCII digits"):
        Body(amount=text, currency="EUR")


@pytest.mark.parametrize("value", [5, 0, -3, True])
def test_json_numbers_are_refused_as_amounts(value):
    with pytest.raises(ValidationError, match="decimal strings"):
        Body(amount=value, currency="EUR")


@pytest.mark.parametrize("code", ["eur", "Eur", " EUR", "EUR ", "XXX1"])
def test_currency_codes_as_iso_4217_writes_them(code):
    with pytest.raises(ValidationError, match="ISO 4217"):
        Body(amount="1.00", currency=code)


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12))
def test_every_plain_decimal_round_trips_through_the_grammar(value):
    text = format(value, "f")
    assert money.parse_decimal(text) == value


@pytest.mark.parametrize("value", ["0.00000000", "0.00", "-0.00000001", "100.00"])
def test_an_amount_goes_out_in_the_grammar_never_in_exponent_form(value):
    """str(Decimal("0.00000000")) is "0E-8": every encoder of a Decimal (the models, the idempotent
    answer, the event) writes the grammar that DECIMAL_SCHEMA documents."""
    import json

    from shared.events import _default
    from shared.idempotency import encode

    zero = Decimal(value)
    assert Body(amount=zero, currency="EUR").model_dump(mode="json")["amount"] == value
    assert json.loads(encode({"amount": zero}))["amount"] == value
    assert _default(zero) == value
    for scaled in (zero, Decimal("1E+3"), Decimal("-5E-9")):
        assert money.DECIMAL_TEXT.fullmatch(money.decimal_text(scaled)), scaled
