"""A contract term's dates and money, without a database: the rules budget commits from."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.registry import terms
from services.registry.terms import add_months, annual_minor, check_term, commit_minor, next_term, term_span
from shared.errors import Errors
from shared.money import MAX_MINOR

D = dt.date


@given(
    start=st.dates(D(2020, 1, 1), D(2040, 12, 31)),
    months=st.integers(1, 60),
    cost=st.integers(0, 10**9),
    period=st.sampled_from(["monthly", "quarterly", "annual"]),
)
def test_a_whole_month_term_costs_its_months_at_the_period_rate(start, months, cost, period):
    end = add_months(start, months) - dt.timedelta(days=1)
    per = {"monthly": 1, "quarterly": 3, "annual": 12}[period]
    got = commit_minor(cost, period, start, end)
    assert got * per == cost * months or abs(got * per - cost * months) * 2 <= per  # one rounding, at the end
    if months % per == 0:
        assert got == cost * months // per


def test_leftover_days_are_prorated_on_a_365_day_year_and_rounded_half_to_even():
    # 1 Jan - 15 Jan 2027: 15 days of a 36500.00 annual contract = 1500.00 exactly.
    assert commit_minor(3_650_000, "annual", D(2027, 1, 1), D(2027, 1, 15)) == 150_000
    # 1 month + 1 day of a 100.00 monthly: 100.00 + 12 * 100.00 / 365 = 103.287... -> 103.29
    assert commit_minor(10_000, "monthly", D(2027, 1, 1), D(2027, 2, 1)) == 10_329
    # Half to even: one month of an annual 0.06 is 0.005 -> 0.00; of 0.18, 0.015 -> 0.02; of 0.30, 0.025 -> 0.02.
    jan = (D(2027, 1, 1), D(2027, 1, 31))
    assert [commit_minor(cost, "annual", *jan) for cost in (6, 18, 30)] == [0, 2, 2]


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (D(2027, 1, 31), 1, D(2027, 2, 28)),
        (D(2028, 1, 31), 1, D(2028, 2, 29)),
        (D(2027, 11, 30), 3, D(2028, 2, 29)),
        (D(2027, 12, 15), 1, D(2028, 1, 15)),
        (D(2027, 3, 31), -1, D(2027, 2, 28)),
        (D(2027, 5, 10), 0, D(2027, 5, 10)),
    ],
)
def test_adding_months_clamps_to_the_last_day_of_the_month(day, months, expected):
    assert add_months(day, months) == expected


@pytest.mark.parametrize(
    ("start", "end", "span"),
    [
        (D(2027, 1, 1), D(2027, 12, 31), (12, 0)),
        (D(2027, 1, 1), D(2027, 1, 15), (0, 15)),
        (D(2027, 1, 31), D(2027, 2, 27), (1, 0)),  # Jan 31 + 1 month is Feb 28, the day after the end
        (D(2027, 1, 31), D(2027, 2, 28), (1, 1)),
        (D(2027, 3, 1), D(2028, 2, 29), (12, 0)),
    ],
)
def test_a_term_is_whole_months_plus_leftover_days(start, end, span):
    assert term_span(start, end) == span


def test_annual_cost_is_exact_for_every_billing_period():
    assert annual_minor(100_000, "monthly") == 1_200_000
    assert annual_minor(250_000, "quarterly") == 1_000_000
    assert annual_minor(1_200_000, "annual") == 1_200_000


def test_the_next_term_starts_the_day_after_and_lasts_as_long():
    assert next_term(D(2027, 1, 1), D(2027, 12, 31)) == (D(2028, 1, 1), D(2028, 12, 31))
    # Whole months stay whole months, whatever the month lengths ...
    assert next_term(D(2027, 2, 1), D(2027, 2, 28)) == (D(2027, 3, 1), D(2027, 3, 31))
    # ... and a term of months plus days keeps its number of days.
    assert next_term(D(2027, 1, 1), D(2027, 1, 15)) == (D(2027, 1, 16), D(2027, 1, 30))
    # Given dates win.
    assert next_term(D(2027, 1, 1), D(2027, 12, 31), new_start=D(2028, 2, 1)) == (D(2028, 2, 1), D(2029, 1, 31))
    assert next_term(D(2027, 1, 1), D(2027, 12, 31), new_end=D(2028, 6, 30)) == (D(2028, 1, 1), D(2028, 6, 30))


def test_the_notice_deadline_is_notice_days_before_the_end():
    assert terms.notice_deadline(D(2027, 12, 31), 60) == D(2027, 11, 1)
    assert terms.notice_deadline(D(2027, 12, 31), 0) == D(2027, 12, 31)


def checked(**overrides) -> tuple[int | None, set[str]]:
    args = {
        "start": D(2027, 1, 1),
        "end": D(2027, 12, 31),
        "billing_period": "annual",
        "cost": Decimal("12000.00"),
        "currency": "EUR",
        "notice_days": 60,
        **overrides,
    }
    errors = Errors()
    cost_minor = check_term(errors, **args)
    return cost_minor, {e.field for e in errors.items}


def test_a_good_term_gives_its_cost_in_minor_units():
    assert checked() == (1_200_000, set())
    assert checked(cost=Decimal("1200"), currency="JPY") == (1200, set())


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"end": D(2026, 12, 31)}, {"end"}),
        ({"end": D(2027, 1, 1)}, {"end"}),
        ({"start": D(1899, 12, 31)}, {"start"}),
        ({"end": D(3000, 1, 1)}, {"end"}),
        ({"start": D(1900, 1, 1), "end": D(1900, 1, 20), "notice_days": 30}, {"notice_days"}),
        ({"cost": Decimal("1.001")}, {"cost"}),
        ({"cost": Decimal(MAX_MINOR // 100)}, {"cost"}),  # the term's cost reaches MAX_MINOR
        ({"billing_period": "monthly", "cost": Decimal(MAX_MINOR // 1200 + 1)}, {"cost"}),  # a year of it does
    ],
)
def test_a_bad_term_names_each_bad_field(overrides, fields):
    assert checked(**overrides)[1] == fields


def test_just_below_the_largest_amount_is_a_term():
    # 10^16 - 1 minor units is the largest total; a year of a monthly cost of that / 12 is just below it.
    cost = Decimal((MAX_MINOR - 1) // 12) / 100
    assert checked(billing_period="monthly", cost=cost)[1] == set()
