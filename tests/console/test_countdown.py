"""The countdown's figures in business time, with the workflow service's own calendar arithmetic."""

from __future__ import annotations

import datetime as dt
import json

from console.countdown import clock, countdown, open_intervals
from services.workflow.calendars import BusinessCalendar

BERLIN = BusinessCalendar.build("Europe/Berlin", {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")})
FRIDAY_4PM = dt.datetime(2026, 12, 4, 15, 0, tzinfo=dt.UTC)  # 16:00 in Berlin


def test_the_text_counts_down_and_past_the_due_time():
    assert countdown(8 * 3600) == "8 h 0 min"
    assert countdown(59) == "0 min"
    assert countdown(-61) == "−1 min"
    assert countdown(None) == "no SLA"


def test_a_friday_afternoon_task_counts_only_opening_hours_until_monday():
    due = BERLIN.add(FRIDAY_4PM, dt.timedelta(hours=2))  # 1 h on Friday, 1 h on Monday
    task = {
        "status": "open",
        "sla_state": "on_track",
        "due_at": due.isoformat(),
        "warn_at": BERLIN.add(FRIDAY_4PM, dt.timedelta(hours=1.5)).isoformat(),
        "remaining_business_minutes": 120,
    }
    shown = clock(task, BERLIN, FRIDAY_4PM)
    data = json.loads(shown["data"])
    assert shown["text"] == "2 h 0 min" and shown["state"] == "on_track"
    assert data["left"] == 7200 and data["due"] == due.timestamp()
    # The first interval is the rest of Friday; the next opens Monday 09:00 Berlin (08:00 UTC).
    monday = dt.datetime(2026, 12, 7, 8, 0, tzinfo=dt.UTC).timestamp()
    assert data["open"][0] == [FRIDAY_4PM.timestamp(), FRIDAY_4PM.timestamp() + 3600]
    assert data["open"][1][0] == monday


def test_closed_or_unknown_tasks_show_the_apis_figures_without_ticking():
    task = {"status": "approved", "sla_state": "met", "due_at": FRIDAY_4PM.isoformat()}
    assert clock(task, BERLIN, FRIDAY_4PM)["data"] is None
    open_task = {
        "status": "open",
        "sla_state": "at_risk",
        "due_at": FRIDAY_4PM.isoformat(),
        "remaining_business_minutes": 5,
    }
    shown = clock(open_task, None, FRIDAY_4PM)
    assert shown["data"] is None and shown["state"] == "warning" and shown["text"] == "5 min"


def test_open_intervals_are_clipped_to_the_window():
    start = dt.datetime(2026, 12, 7, 10, 30, tzinfo=dt.UTC)
    found = open_intervals(BERLIN, start, start + dt.timedelta(hours=2))
    assert found == [[int(start.timestamp()), int((start + dt.timedelta(hours=2)).timestamp())]]
