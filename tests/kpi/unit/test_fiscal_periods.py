"""Fiscal time and comparisons: fiscal buckets and names, shifted periods, the change arithmetic."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kpi import periods
from services.kpi.comparisons import change
from shared.errors import Invalid

D = dt.date
days = st.dates(D(1901, 1, 1), D(2998, 12, 31))
starts = st.integers(1, 12)


@pytest.mark.parametrize(
    ("day", "fiscal_start", "quarter_start", "year_start", "fy", "fq"),
    [
        (D(2027, 3, 17), 1, D(2027, 1, 1), D(2027, 1, 1), 2027, 1),
        (D(2027, 3, 17), 4, D(2027, 1, 1), D(2026, 4, 1), 2027, 4),  # FY2027 = 2026-04-01 .. 2027-03-31
        (D(2027, 4, 1), 4, D(2027, 4, 1), D(2027, 4, 1), 2028, 1),
        (D(2026, 12, 31), 2, D(2026, 11, 1), D(2026, 2, 1), 2027, 4),
        (D(2027, 1, 5), 2, D(2026, 11, 1), D(2026, 2, 1), 2027, 4),
        (D(2027, 10, 1), 10, D(2027, 10, 1), D(2027, 10, 1), 2028, 1),  # US federal: FY2028 from 2027-10-01
    ],
)
def test_fiscal_buckets_and_their_names(day, fiscal_start, quarter_start, year_start, fy, fq):
    assert periods.grain_start(day, "fiscal_quarter", fiscal_start) == quarter_start
    assert periods.grain_start(day, "fiscal_year", fiscal_start) == year_start
    assert periods.fiscal_year(day, fiscal_start) == fy and periods.fiscal_quarter(day, fiscal_start) == fq
    assert periods.period_label(quarter_start, "fiscal_quarter", fiscal_start) == f"FY{fy}-Q{fq}"
    assert periods.period_label(year_start, "fiscal_year", fiscal_start) == f"FY{fy}"


@given(day=days, fiscal_start=starts, grain=st.sampled_from(["fiscal_quarter", "fiscal_year"]))
def test_a_day_lies_in_its_fiscal_bucket_and_the_bucket_parses_back(day, fiscal_start, grain):
    first = periods.grain_start(day, grain, fiscal_start)
    following = periods.next_start(first, grain)
    assert first <= day < following and first.day == 1
    label = periods.period_label(first, grain, fiscal_start)
    assert periods.parse_period(label, fiscal_start=fiscal_start) == (first, following - dt.timedelta(days=1))


@given(day=days, fiscal_start=starts)
def test_with_a_january_start_fiscal_periods_are_calendar_periods(day, fiscal_start):
    for fiscal, plain in (("fiscal_quarter", "quarter"), ("fiscal_year", "month")):
        if fiscal == "fiscal_quarter":
            assert periods.grain_start(day, fiscal, 1) == periods.grain_start(day, plain)
    assert periods.parse_period(f"FY{day.year}", fiscal_start=1) == periods.parse_period(str(day.year))
    fy = periods.named_period(f"FY{day.year}", fiscal_start=fiscal_start)
    assert (fy.last - fy.first).days + 1 in (365, 366) and fy.last.year == day.year


@pytest.mark.parametrize(
    ("period", "fiscal_start", "first", "last"),
    [
        ("FY2027", 4, D(2026, 4, 1), D(2027, 3, 31)),
        ("FY2027-Q1", 4, D(2026, 4, 1), D(2026, 6, 30)),
        ("FY2027-Q4", 4, D(2027, 1, 1), D(2027, 3, 31)),
        ("FY2027-Q2", 1, D(2027, 4, 1), D(2027, 6, 30)),
        ("FY2027-Q3", 11, D(2027, 5, 1), D(2027, 7, 31)),
    ],
)
def test_fiscal_periods_parse(period, fiscal_start, first, last):
    assert periods.parse_period(period, fiscal_start=fiscal_start) == (first, last)


@pytest.mark.parametrize("period", ["FY2027-03", "FY27", "fy2027", "FY2027-Q5", "FY1900"])
def test_broken_fiscal_periods_are_refused_naming_the_field(period):
    with pytest.raises(Invalid) as exc:
        periods.parse_period(period, "query.period", fiscal_start=4)
    assert exc.value.errors[0].field == "query.period"


@pytest.mark.parametrize(
    ("period", "fiscal_start", "previous", "last_year"),
    [
        ("2027-Q1", 1, "2026-Q4", "2026-Q1"),
        ("2027-01", 1, "2026-12", "2026-01"),
        ("2027", 1, "2026", "2026"),
        ("FY2027-Q1", 4, "FY2026-Q4", "FY2026-Q1"),  # across the fiscal year boundary
        ("FY2027-Q4", 4, "FY2027-Q3", "FY2026-Q4"),  # Q4 of FY2027 is January-March 2027
        ("FY2027", 7, "FY2026", "FY2026"),
    ],
)
def test_comparison_periods_line_up(period, fiscal_start, previous, last_year):
    p = periods.named_period(period, fiscal_start=fiscal_start)
    for compare, want in (("previous_period", previous), ("last_year", last_year)):
        q = p.shifted(compare)
        assert q.label == want
        assert (q.first, q.last) == periods.parse_period(want, fiscal_start=fiscal_start)


@given(day=days, fiscal_start=starts, grain=st.sampled_from(periods.GRAINS))
def test_shifted_bucket_starts_are_bucket_starts_of_the_same_kind(day, fiscal_start, grain):
    """Comparisons pair buckets by their shifted start: a bucket start must shift onto a bucket start."""
    first = periods.grain_start(day, grain, fiscal_start)
    for compare in periods.COMPARISONS:
        then = periods.shift(first, grain, compare)
        assert then < first
        if grain != "day":
            assert periods.grain_start(then, grain, fiscal_start) == then
        if grain in ("month", "quarter", "fiscal_quarter") and compare == "last_year":  # the same month or quarter
            now_label, then_label = (periods.period_label(d, grain, fiscal_start) for d in (first, then))
            assert now_label.split("-")[1] == then_label.split("-")[1]
    assert periods.shift(first, grain, "previous_period") == periods.grain_start(
        first - dt.timedelta(days=1), grain, fiscal_start
    )


def test_weeks_compare_with_the_same_weekday_and_months_clamp():
    assert periods.shift(D(2027, 3, 15), "week", "last_year") == D(2026, 3, 16)  # both Mondays
    assert periods.shift(D(2028, 2, 29), "day", "last_year") == D(2027, 2, 28)
    assert periods.add_months(D(2027, 3, 31), -1) == D(2027, 2, 28)


def test_compare_parameters():
    assert periods.parse_compare(["last_year,previous_period", "last_year"]) == ["last_year", "previous_period"]
    with pytest.raises(Invalid) as exc:
        periods.parse_compare(["yesterday"])
    assert exc.value.errors[0].field == "query.compare"


def test_change_is_absolute_and_relative_and_undefined_on_a_zero_base():
    assert change(Decimal(125), Decimal(100), "count") == {"value": "100", "change": "25", "percent_change": "0.25"}
    assert change(Decimal(5), Decimal(-10), "currency") == {
        "value": "-10.00",
        "change": "15.00",
        "percent_change": "1.5",  # against the earlier value's magnitude: up from -10 is an increase
    }
    assert change(Decimal(5), Decimal(0), "count") == {"value": "0", "change": "5", "percent_change": None}
    assert change(None, Decimal(3), "count") == {"value": "3", "change": None, "percent_change": None}
    assert change(Decimal(1), Decimal(3), "count")["percent_change"] == "-0.666667"
