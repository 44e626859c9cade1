"""A plan's calendar and a line's figures, without a database: the rules every posting and read applies."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.budget.figures import Figures, pacing, refuses, thresholds_crossed
from services.budget.periods import check_period, elapsed_share, entry_date, period_bounds, period_range, periods_of
from shared.errors import Invalid


class P:
    name = "FY27"
    fiscal_year = 2027


def test_a_plan_has_the_twelve_months_of_its_fiscal_year():
    assert periods_of(2027) == [f"2027-{m:02d}" for m in range(1, 13)]


@pytest.mark.parametrize("bad", ["2027-13", "2027-00", "2027-3", "27-03", "2027-03\n", "", None, 202703])
def test_a_period_is_yyyy_mm_exactly(bad):
    with pytest.raises(Invalid) as exc:
        check_period(P(), bad, "period")
    assert exc.value.errors[0].field == "period"


def test_a_period_outside_the_plan_names_its_fiscal_year():
    with pytest.raises(Invalid, match="outside plan 'FY27' \\(fiscal year 2027\\)"):
        check_period(P(), "2028-01")


def test_a_range_defaults_to_the_whole_year_and_may_not_run_backwards():
    assert period_range(P(), None, None) == ("2027-01", "2027-12")
    assert period_range(P(), "2027-03", None) == ("2027-03", "2027-12")
    with pytest.raises(Invalid) as exc:
        period_range(P(), "2027-05", "2027-04")
    assert exc.value.errors[0].field == "query.from"


@given(st.integers(2000, 2100), st.integers(1, 12))
def test_period_bounds_cover_the_month_and_nothing_else(year, month):
    period = f"{year}-{month:02d}"
    first, last = period_bounds(period)
    assert first == dt.date(year, month, 1) and last.month == month
    assert (last + dt.timedelta(days=1)).day == 1
    assert entry_date(period, None) == first and entry_date(period, last) == last
    with pytest.raises(Invalid):
        entry_date(period, last + dt.timedelta(days=1))


def test_elapsed_share_is_clamped_to_the_range():
    assert elapsed_share("2027-01", "2027-01", dt.date(2026, 12, 31)) == Decimal("0")
    assert elapsed_share("2027-01", "2027-01", dt.date(2027, 1, 16)) == Decimal("0.5161")
    assert elapsed_share("2027-01", "2027-12", dt.date(2030, 1, 1)) == Decimal("1")


def test_figures_say_what_is_available_and_consumed():
    f = Figures(allocated=1000, committed=300, pending=200, spent=100)
    assert (f.available, f.consumed, f.has_money) == (400, 600, True)
    assert f.minus((100, 50, 0, 0)) == Figures(900, 250, 200, 100)
    assert not Figures().has_money
    assert f.view("JPY") == {
        "allocated": "1000",
        "committed": "300",
        "pending": "200",
        "spent": "100",
        "available": "400",
        "currency": "JPY",
    }


@given(
    allocated=st.integers(1, 10_000),
    before=st.integers(0, 20_000),
    more=st.integers(0, 20_000),
)
def test_each_threshold_is_crossed_once_on_the_way_up(allocated, before, more):
    b, a = Figures(allocated, before), Figures(allocated, before + more)
    crossed = thresholds_crossed(b, a)
    for t in (80, 100):
        assert (t in crossed) == (before * 100 < t * allocated <= (before + more) * 100)
    # Going back down crosses nothing.
    assert thresholds_crossed(a, b) == []


def test_no_threshold_without_an_allocation():
    assert thresholds_crossed(Figures(0, 0), Figures(0, 100)) == []


def test_a_checked_posting_is_refused_only_when_it_makes_available_negative_and_lower():
    assert refuses(Figures(100, 50), Figures(100, 150))
    assert not refuses(Figures(100, 50), Figures(100, 100))  # exactly zero is fine
    assert not refuses(Figures(100, 300), Figures(110, 300))  # already short, but this helps
    assert refuses(Figures(100, 300), Figures(100, 310))


@pytest.mark.parametrize(
    ("spent", "status"), [(500, "on_track"), (700, "overspending"), (300, "underspending"), (600, "on_track")]
)
def test_pacing_compares_spend_with_elapsed_time_within_ten_points(spent, status):
    p = pacing(Figures(allocated=1000, spent=spent), Decimal("0.5"))
    assert p["status"] == status and p["spent_share"] == f"{spent / 1000:.4f}"


def test_pacing_without_budget():
    assert pacing(Figures(spent=10), Decimal("0.5"))["status"] == "no_budget"
