"""Periods and grains: bucket starts, windows, target periods, pacing, query parameters."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kpi import periods
from shared.errors import Invalid

D = dt.date


@pytest.mark.parametrize(
    ("day", "grain", "start", "following"),
    [
        (D(2027, 3, 17), "day", D(2027, 3, 17), D(2027, 3, 18)),
        (D(2027, 3, 17), "week", D(2027, 3, 15), D(2027, 3, 22)),  # ISO weeks start on Monday
        (D(2027, 3, 17), "month", D(2027, 3, 1), D(2027, 4, 1)),
        (D(2027, 12, 31), "month", D(2027, 12, 1), D(2028, 1, 1)),
        (D(2027, 11, 5), "quarter", D(2027, 10, 1), D(2028, 1, 1)),
    ],
)
def test_grain_starts_and_the_next_bucket(day, grain, start, following):
    assert periods.grain_start(day, grain) == start
    assert periods.next_start(start, grain) == following


@given(day=st.dates(D(1900, 1, 1), D(2998, 12, 31)), grain=st.sampled_from(periods.GRAINS))
def test_a_day_lies_in_its_bucket(day, grain):
    start = periods.grain_start(day, grain)
    assert start <= day < periods.next_start(start, grain)


def test_a_window_is_cut_into_buckets_from_the_first_grain_start():
    w = periods.window(D(2027, 2, 15), D(2027, 5, 2), "month")
    assert w.starts == [D(2027, 2, 1), D(2027, 3, 1), D(2027, 4, 1), D(2027, 5, 1)]
    assert w.utc and not periods.window(D(2027, 1, 1), D(2027, 1, 2), "day", "Europe/Berlin").utc
    assert periods.window(D(2027, 1, 1), D(2027, 3, 31), "period").starts == [D(2027, 1, 1)]


def test_a_local_window_starts_at_local_midnight():
    w = periods.window(D(2027, 7, 1), D(2027, 7, 31), "month", "Europe/Berlin")
    assert w.instant(D(2027, 7, 1)) == dt.datetime(2027, 6, 30, 22, tzinfo=dt.UTC)


def test_every_broken_window_parameter_is_reported_at_once():
    with pytest.raises(Invalid) as refused:
        periods.window(D(2027, 2, 1), D(2027, 1, 1), "fortnight", "Mars/Olympus")
    assert sorted(e.field for e in refused.value.errors) == ["query.from", "query.grain", "query.tz"]


def test_too_many_buckets_ask_for_a_coarser_grain():
    with pytest.raises(Invalid, match="coarser grain"):
        periods.window(D(1900, 1, 1), D(2020, 1, 1), "day")


@pytest.mark.parametrize(
    ("period", "first", "last"),
    [
        ("2027", D(2027, 1, 1), D(2027, 12, 31)),
        ("2027-Q1", D(2027, 1, 1), D(2027, 3, 31)),
        ("2027-Q4", D(2027, 10, 1), D(2027, 12, 31)),
        ("2028-02", D(2028, 2, 1), D(2028, 2, 29)),
    ],
)
def test_periods_are_years_quarters_and_months(period, first, last):
    assert periods.parse_period(period) == (first, last)
    if "-" in period:
        assert periods.period_label(first, "quarter" if "Q" in period else "month") == period


@pytest.mark.parametrize("period", ["2027-13", "2027-Q5", "27", "2027-3", "\u0662\u0660\u0662\u0667", "9999", "1899"])
def test_other_periods_are_refused_naming_the_field(period):
    with pytest.raises(Invalid) as refused:
        periods.parse_period(period, "body.period")
    assert [e.field for e in refused.value.errors] == ["body.period"]


def test_elapsed_is_the_fraction_of_the_period_before_now():
    q1 = (D(2027, 1, 1), D(2027, 3, 31))
    assert periods.elapsed(*q1, dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == 0
    assert periods.elapsed(*q1, dt.datetime(2027, 2, 15, 12, tzinfo=dt.UTC)) == pytest.approx(45.5 / 90)
    assert periods.elapsed(*q1, dt.datetime(2027, 4, 1, tzinfo=dt.UTC)) == 1


def test_filters_or_the_values_of_one_dimension_and_group_by_keeps_order():
    assert periods.parse_filter(["region:EMEA,region:NA", " channel : search "]) == {
        "region": {"EMEA", "NA"},
        "channel": {"search"},
    }
    assert periods.parse_group_by(["channel,region", "channel"]) == ["channel", "region"]
    for bad in (["region"], ["Region:EMEA"], ["region:"]):
        with pytest.raises(Invalid):
            periods.parse_filter(bad)
    with pytest.raises(Invalid, match="at most 5"):
        periods.parse_group_by(["a,b,c,d,e,f"])
