"""Conditions are data: validated with every reason, evaluated without eval, numbers as Decimal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.workflow import conditions
from shared.errors import Errors

CTX = {
    "amount": "25000.00",
    "channel": "events",
    "region": "EMEA",
    "tags": ["launch", "q3"],
    "dimensions": {"campaign": "spring"},
    "seats": 40,
    "flag": True,
}


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        ({"field": "amount", "op": "gte", "value": "10000"}, True),
        ({"field": "amount", "op": "gt", "value": 25000}, False),
        ({"field": "amount", "op": "eq", "value": "25000"}, True),  # Decimal, not string, equality
        ({"field": "amount", "op": "lt", "value": "9000.5"}, False),
        ({"field": "seats", "op": "lte", "value": "40"}, True),
        ({"field": "channel", "op": "eq", "value": "events"}, True),
        ({"field": "channel", "op": "ne", "value": "events"}, False),
        ({"field": "region", "op": "in", "value": ["EMEA", "APAC"]}, True),
        ({"field": "region", "op": "not_in", "value": ["EMEA"]}, False),
        ({"field": "tags", "op": "contains", "value": "launch"}, True),
        ({"field": "channel", "op": "contains", "value": "vent"}, True),
        ({"field": "dimensions.campaign", "op": "eq", "value": "spring"}, True),
        ({"field": "missing", "op": "exists", "value": False}, True),
        ({"field": "missing", "op": "ne", "value": "x"}, False),
        ({"field": "flag", "op": "eq", "value": True}, True),
        ({"field": "flag", "op": "eq", "value": 1}, False),
        (
            {
                "any": [
                    {"field": "amount", "op": "gt", "value": "1e6"},
                    {"field": "channel", "op": "eq", "value": "events"},
                ]
            },
            True,
        ),
        (
            {
                "all": [
                    {"field": "amount", "op": "gt", "value": "1e6"},
                    {"field": "channel", "op": "eq", "value": "events"},
                ]
            },
            False,
        ),
        ([], True),
    ],
)
def test_evaluate(cond, expected):
    errors = Errors()
    conditions.validate(cond, errors, "c")
    assert errors.items == []
    assert conditions.evaluate(cond, CTX) is expected


def test_every_malformed_part_is_named():
    errors = Errors()
    conditions.validate(
        [
            {"field": "amount", "op": "between", "value": 1},
            {"op": "eq", "value": 1},
            {"field": "region", "op": "in", "value": "EMEA"},
            {"all": []},
            "amount > 5",
            {"field": "x", "op": "eq"},
        ],
        errors,
        "trigger.conditions",
    )
    assert [e.field for e in errors.items] == [
        "trigger.conditions[0].op",
        "trigger.conditions[1].field",
        "trigger.conditions[2].value",
        "trigger.conditions[3].all",
        "trigger.conditions[4]",
        "trigger.conditions[5].value",
    ]


def test_code_in_a_condition_is_just_a_string():
    cond = {"field": "__import__('os').system('true')", "op": "exists", "value": True}
    assert conditions.evaluate(cond, CTX) is False


@given(
    a=st.decimals(allow_nan=False, allow_infinity=False, places=2),
    b=st.decimals(allow_nan=False, allow_infinity=False, places=2),
)
def test_numeric_strings_compare_like_decimals(a, b):
    ctx = {"x": str(a)}
    assert conditions.evaluate({"field": "x", "op": "gte", "value": str(b)}, ctx) is (a >= b)
    assert conditions.evaluate({"field": "x", "op": "lt", "value": str(b)}, ctx) is (a < b)
