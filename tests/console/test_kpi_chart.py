"""Which buckets of a KPI chart are still running (drawn dashed, marked 'so far')."""

from __future__ import annotations

import datetime as dt

from console.kpis import chart_of, partial_buckets

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
    assert chart["series"] == [{"name": "search", "values": [10.5, 2.0]}]
