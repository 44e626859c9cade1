"""Phasing and variance arithmetic, without a database: the months add up to the annual amount exactly
in minor units, and variances are exact Decimals (never floats) that add up across groups."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.budget.phasing import even, seasonality, spread
from services.budget.variance import percent, variances
from shared.errors import Invalid
from shared.money import from_minor

totals = st.integers(min_value=-(10**15), max_value=10**15)
weights = st.lists(st.integers(0, 10**6), min_size=12, max_size=12).filter(any)
decimal_weights = st.lists(
    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False), min_size=12, max_size=12
).filter(any)


@given(total=totals)
def test_even_phasing_adds_up_and_differs_by_at_most_one_minor_unit(total):
    months = even(total)
    assert sum(months) == total and len(months) == 12
    assert max(months) - min(months) <= 1


@given(total=totals, w=st.one_of(weights, decimal_weights))
def test_weighted_phasing_adds_up_exactly_and_stays_within_one_unit_of_each_share(total, w):
    months = spread(total, w)
    assert sum(months) == total
    whole = sum(Decimal(x) for x in w)
    for m, x in zip(months, w, strict=True):
        exact = Decimal(total) * Decimal(x) / whole
        assert abs(Decimal(m) - exact) < 1
        if x == 0:
            assert m == 0  # a month with no weight gets nothing


@given(total=totals, last=st.lists(st.integers(-(10**9), 10**9), min_size=12, max_size=12))
def test_seasonality_follows_last_years_spend_and_adds_up(total, last):
    if not any(v > 0 for v in last):
        with pytest.raises(Invalid):
            seasonality(total, last)
        return
    months = seasonality(total, last)
    assert sum(months) == total
    assert all(m == 0 for m, v in zip(months, last, strict=True) if v <= 0)


def test_phasing_refuses_negative_or_empty_weights():
    with pytest.raises(Invalid):
        spread(100, [0] * 12)
    with pytest.raises(Invalid):
        spread(100, [1] * 11 + [-1])
    assert spread(1000, [1, 1, 1]) == [334, 333, 333]  # the remainder to the earliest


@given(base=st.integers(-(10**15), 10**15), other=st.integers(-(10**15), 10**15))
def test_a_variance_is_exact_and_its_percentage_is_rounded_half_even(base, other):
    [v] = variances({"budget": base, "actual": other}, ["budget", "actual"], "EUR")
    assert Decimal(v["absolute"]) == from_minor(other, "EUR") - from_minor(base, "EUR")
    if base == 0:
        assert v["percent"] is None
    else:
        p = Decimal(v["percent"])
        assert p == percent(base, other) and p.as_tuple().exponent == -2
        assert abs(p - Decimal(other - base) * 100 / Decimal(base)) <= Decimal("0.005")


@given(groups=st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)), min_size=1, max_size=10))
def test_absolute_variances_of_groups_add_up_to_the_totals(groups):
    labels = ["budget", "forecast:1"]
    parts = [Decimal(variances({"budget": a, "forecast:1": b}, labels, "JPY")[0]["absolute"]) for a, b in groups]
    total = variances({"budget": sum(a for a, _ in groups), "forecast:1": sum(b for _, b in groups)}, labels, "JPY")[0][
        "absolute"
    ]
    assert sum(parts) == Decimal(total)
