"""Attribution weights: each model's shares, the integer fast path's exact ratios, and the split."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.kpi import attribution
from shared.errors import Invalid

T = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def shares(model: str, n: int, half_life: float = 7.0) -> list[Fraction]:
    times = [T - (n - 1 - i) * DAY for i in range(n)]
    w = attribution.weights(model, times, T, half_life)
    return [x / sum(w) for x in w]


@pytest.mark.parametrize(
    ("model", "n", "want"),
    [
        ("first_touch", 3, ["1", "0", "0"]),
        ("last_touch", 3, ["0", "0", "1"]),
        ("linear", 4, ["1/4"] * 4),
        ("position_based", 1, ["1"]),
        ("position_based", 2, ["1/2", "1/2"]),
        ("position_based", 5, ["2/5", "1/15", "1/15", "1/15", "2/5"]),
    ],
)
def test_rule_based_models_give_their_textbook_shares(model, n, want):
    assert shares(model, n) == [Fraction(x) for x in want]


def test_time_decay_halves_a_touchpoint_per_half_life_before_the_latest():
    assert shares("time_decay", 3, half_life=1.0) == [Fraction(1, 7), Fraction(2, 7), Fraction(4, 7)]
    older, latest = shares("time_decay", 2, half_life=2.0)  # one day apart: half a half-life
    assert float(latest / older) == pytest.approx(2**0.5, rel=1e-15)


@settings(max_examples=200, deadline=None, database=None)
@given(
    offsets=st.lists(st.integers(0, 400 * 86400), min_size=1, max_size=20),
    model=st.sampled_from(attribution.MODELS),
    half_life=st.floats(0.01, 3650),
)
def test_integer_weights_have_exactly_the_ratios_of_the_fractions(offsets, model, half_life):
    times = sorted(T - dt.timedelta(seconds=o) for o in offsets)
    exact = attribution.weights(model, times, T, half_life)
    ints = attribution.int_weights(model, times, half_life)
    assert [Fraction(i, sum(ints)) for i in ints] == [x / sum(exact) for x in exact]


@given(value=st.integers(0, 10**15), ints=st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_split_adds_up_exactly_and_each_part_is_within_one_unit(value, ints):
    if sum(ints) == 0:
        with pytest.raises(ValueError):
            attribution.split(value, ints)
        return
    parts = attribution.split(value, ints)
    assert sum(parts) == value
    assert all(abs(Fraction(p) - Fraction(value * w, sum(ints))) < 1 for p, w in zip(parts, ints, strict=True))
    assert parts == attribution.split(value, [Fraction(w) for w in ints])  # both paths give the same split


def test_the_remainder_goes_to_the_earliest_among_equal_shares():
    assert attribution.split(2, [1, 1, 1]) == [1, 1, 0]
    assert attribution.split(100, [1, 1, 1]) == [34, 33, 33]


@pytest.mark.parametrize(
    ("micro", "step"), [(123_450_000, 10_000), (1_234_500, 100), (1_000, 1_000), (1_000_001, 1), (0, 10_000)]
)
def test_values_are_split_in_cents_or_in_their_own_finer_unit(micro, step):
    assert attribution.split_step(micro) == step


def test_an_unknown_model_is_refused_naming_the_query_field():
    with pytest.raises(Invalid) as refused:
        attribution.weights("u_shaped", [T], T, 7)
    assert [e.field for e in refused.value.errors] == ["query.model"]
    with pytest.raises(Invalid) as refused:
        attribution.check_query("linear", dt.date(2027, 2, 1), dt.date(2027, 1, 1), 0)
    assert sorted(e.field for e in refused.value.errors) == ["query.from", "query.half_life_days"]
