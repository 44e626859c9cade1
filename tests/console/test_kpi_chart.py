"""Which buckets of a KPI chart are still running (drawn dashed), and the running bucket's value
projected to the whole bucket for a metric that adds up ('projected'), else shown as it stands."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from console.kpis import chart_of, elapsed, partial_buckets, projected

TODAY = dt.date(2026, 12, 4)


def test_the_current_month_is_partial_and_the_complete_ones_are_not():
    months = ["2026-10-01", "2026-11-01", "2026-12-01"]
    assert partial_buckets(months, "month", TODAY, TODAY) == [False, False, True]
    # A range ending on the last day of a month holds only complete months.
    assert partial_buckets(months[:2], "month", dt.date(2026, 11, 30), TODAY) == [False, False]
    # A range cut mid-month leaves that month partial, even in the past.
    assert partial_buckets(months[:2], "month", dt.date(2026, 11, 15), TODAY) == [False, True]


def test_weeks_quarters_and_today():
    assert partial_buckets(["2026-11-23", "2026-11-30"], "week", TODAY, TODAY) == [False, True]
    assert partial_buckets(["2026-07-01", "2026-10-01"], "quarter", TODAY, TODAY) == [False, True]
    assert partial_buckets(["2026-12-03", "2026-12-04"], "day", TODAY, TODAY) == [False, True]
    assert partial_buckets(["2025-12-01"], "month", dt.date(2025, 12, 31), TODAY) == [False]


def test_the_chart_carries_the_partial_flags_beside_the_values():
    series = {
        "series": [
            {
                "group": {"channel": "search"},
                "points": [{"bucket": "2026-11-01", "value": "10.50"}, {"bucket": "2026-12-01", "value": "2"}],
            }
        ]
    }
    chart = chart_of(series, "spend", "month", TODAY, TODAY)
    assert chart["partial"] == [False, True]
    assert chart["series"][0]["name"] == "search" and chart["series"][0]["values"] == [10.5, 2.0]


SPEND = {"key": "spend", "kind": "base", "aggregation": "sum"}
LEADS = {"key": "leads", "kind": "base", "aggregation": "count"}
CPL = {"key": "cpl", "kind": "derived", "aggregation": None, "formula": "spend / leads"}
AVG = {"key": "deal", "kind": "base", "aggregation": "avg"}
UNIQUE = {"key": "visitors", "kind": "base", "aggregation": "count_distinct"}


def one_series(*points: tuple[str, str | None]) -> dict:
    return {"series": [{"group": {}, "points": [{"bucket": b, "value": v} for b, v in points]}]}


def test_the_days_counted_in_a_running_bucket():
    assert elapsed("2026-12-01", "month", TODAY, TODAY) == (4, 31)  # 1 to 4 December, today included
    assert elapsed("2026-11-01", "month", dt.date(2026, 11, 15), TODAY) == (15, 30)  # a range cut mid-month
    assert elapsed("2026-10-01", "quarter", TODAY, TODAY) == (31 + 30 + 4, 92)
    assert elapsed("2026-11-30", "week", TODAY, TODAY) == (5, 7)
    assert elapsed("2027-01-01", "month", TODAY, TODAY) is None and elapsed("junk", "month", TODAY, TODAY) is None


def test_a_partial_value_projected_to_the_whole_month():
    assert projected(Decimal("2000"), (4, 31)) == Decimal("15500")
    assert projected(Decimal("0"), (1, 30)) == 0 and projected(None, (4, 31)) is None
    assert projected(Decimal("7"), None) is None


def test_a_sum_early_in_a_month_is_drawn_projected_not_as_a_fall():
    series = one_series(("2026-10-01", "31000.00"), ("2026-11-01", "30000.00"), ("2026-12-01", "4000.00"))
    chart = chart_of(series, "spend", "month", TODAY, TODAY, SPEND)
    assert chart["mode"] == "projected" and chart["label"] == "projected"
    drawn = chart["series"][0]
    assert drawn["values"] == [31000.0, 30000.0, 4000.0]  # the figures as the API gave them
    # 4 000 in 4 of 31 days is 31 000 at that pace: level with the complete months, not a drop to 4 000.
    assert drawn["projected"] == [None, None, 31000.0] and drawn["projected_exact"] == [None, None, "31000.00"]
    assert chart["days"] == [None, None, (4, 31)]
    # A count adds up too; a range cut on the 15th of November doubles November's 30-day figure.
    cut = chart_of(
        one_series(("2026-10-01", "40"), ("2026-11-01", "21")), "leads", "month", dt.date(2026, 11, 15), TODAY, LEADS
    )
    assert cut["mode"] == "projected" and cut["series"][0]["projected"] == [None, 42.0]


def test_ratios_averages_distinct_counts_and_days_are_not_projected():
    series = one_series(("2026-11-01", "41.20"), ("2026-12-01", "39.90"))
    for definition in (CPL, AVG, UNIQUE, None):
        chart = chart_of(series, "m", "month", TODAY, TODAY, definition)
        assert chart["mode"] == "to_date" and chart["label"] == "month to date", definition
        assert chart["series"][0]["projected"] == [None, 39.9]  # drawn dashed at its value so far
    days = chart_of(one_series(("2026-12-03", "5"), ("2026-12-04", "1")), "spend", "day", TODAY, TODAY, SPEND)
    assert (
        days["mode"] == "to_date" and days["label"] == "so far today" and days["series"][0]["projected"] == [None, 1.0]
    )
    weeks = chart_of(one_series(("2026-11-30", "10")), "spend", "week", TODAY, TODAY, AVG)
    assert weeks["label"] == "week to date"
