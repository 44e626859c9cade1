"""A plan's calendar and a line's figures, without a database: the rules every posting and read applies."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.budget.figures import Figures, pacing, refuses, thresholds_crossed
from services.budget.periods import (
    check_period,
    control_scope,
    elapsed_share,
    entry_date,
    fiscal_quarter,
    period_bounds,
    period_range,
    periods_of,
)
from shared.errors import Invalid


class P:
    name = "FY27"
    fiscal_year = 2027
    fiscal_year_start = 1


def test_a_plan_has_the_twelve_months_of_its_fiscal_year():
    assert periods_of(2027) == [f"2027-{m:02d}" for m in range(1, 13)]


@pytest.mark.parametrize("bad", ["2027-13", "2027-00", "2027-3", "27-03", "2027-03\n", "", None, 202703])
def test_a_period_is_yyyy_mm_exactly(bad):
    with pytest.raises(Invalid) as exc:
        check_period(P(), bad, "period")
    assert exc.value.errors[0].field == "period"


def test_a_period_outside_the_plan_names_its_fiscal_year():
    with pytest.raises(Invalid, match="outside plan 'FY27' \\(fiscal year 2027: 2027-01 to 2027-12\\)"):
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


class April:
    name = "FY27 April"
    fiscal_year = 2027
    fiscal_year_start = 4


def test_a_fiscal_year_starting_in_april_is_named_by_the_year_it_ends_in():
    months = periods_of(2027, 4)
    assert months[0] == "2026-04" and months[-1] == "2027-03" and len(set(months)) == 12
    assert check_period(April(), "2026-11") == "2026-11"
    with pytest.raises(Invalid) as exc:
        check_period(April(), "2027-04")
    assert "2026-04 to 2027-03" in exc.value.errors[0].message
    assert period_range(April(), None, None) == ("2026-04", "2027-03")


def test_fiscal_quarters_and_control_scopes_follow_the_fiscal_year_start():
    assert fiscal_quarter(April(), "2026-04") == "FY2027-Q1"
    assert fiscal_quarter(April(), "2027-01") == "FY2027-Q4"
    assert fiscal_quarter(P(), "2027-07") == "FY2027-Q3"
    assert control_scope(April(), "month", "2026-05") == ("2026-05", ["2026-05"])
    assert control_scope(April(), "quarter", "2026-12") == ("FY2027-Q3", ["2026-10", "2026-11", "2026-12"])
    assert control_scope(April(), "quarter", "2027-02") == ("FY2027-Q4", ["2027-01", "2027-02", "2027-03"])
    name, months = control_scope(April(), "fiscal_year", "2026-09")
    assert name == "FY2027" and months == periods_of(2027, 4)


@given(start=st.integers(1, 12), index=st.integers(0, 11), control=st.sampled_from(["month", "quarter", "fiscal_year"]))
def test_every_month_lies_in_exactly_one_control_period_of_its_plan(start, index, control):
    plan = type("Plan", (), {"name": "x", "fiscal_year": 2030, "fiscal_year_start": start})()
    months = periods_of(2030, start)
    period = months[index]
    name, scope = control_scope(plan, control, period)
    assert period in scope and set(scope) <= set(months)
    assert all(control_scope(plan, control, m) == (name, scope) for m in scope)
    size = {"month": 1, "quarter": 3, "fiscal_year": 12}[control]
    assert len(scope) == size
