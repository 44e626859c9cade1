"""Derived-metric formulas: arithmetic only, exact decimals, undefined instead of errors."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.kpi import formula
from shared.errors import Invalid


def ev(text: str, **env: str | None) -> Decimal | None:
    return formula.parse(text).evaluate({k: None if v is None else Decimal(v) for k, v in env.items()})


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 - 4 - 3", "3"),  # left-associative
        ("2 / 4 / 2", "0.25"),
        ("--2", "2"),
        ("-(2 - 5)", "3"),
        ("0.1 + 0.2", "0.3"),  # exact decimals, not binary floats
    ],
)
def test_precedence_associativity_and_exactness(text, want):
    assert ev(text) == Decimal(want)


def test_references_are_the_metric_keys_it_names():
    f = formula.parse("(revenue - spend) / spend")
    assert f.references == frozenset({"revenue", "spend"})
    assert ev("(revenue - spend) / spend", revenue="250", spend="200") == Decimal("0.25")


@pytest.mark.parametrize("env", [{"spend": "10", "leads": "0"}, {"spend": "10", "leads": None}, {"spend": "10"}])
def test_a_division_by_zero_or_a_missing_operand_is_undefined(env):
    assert ev("spend / leads", **env) is None


def test_a_result_past_the_exact_range_is_undefined():
    assert ev("x * x", x=str(10**20)) is None
    assert ev("x * x", x=str(10**19)) == Decimal(10) ** 38


def test_constants_and_nesting_are_bounded():
    formula.parse("1" * formula.MAX_DIGITS)
    with pytest.raises(Invalid):
        formula.parse("1" * (formula.MAX_DIGITS + 1))
    formula.parse("(" * (formula.MAX_DEPTH - 1) + "1" + ")" * (formula.MAX_DEPTH - 1))
    with pytest.raises(Invalid):
        formula.parse("(" * (formula.MAX_DEPTH + 1) + "1" + ")" * (formula.MAX_DEPTH + 1))


def test_keys_are_lower_case_identifiers_that_are_not_python_keywords():
    assert formula.valid_key("cost_per_lead2")
    assert not formula.valid_key("2cpl") and not formula.valid_key("CPL") and not formula.valid_key("lambda")
