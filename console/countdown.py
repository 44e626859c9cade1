"""The live SLA countdown: what a page needs to tick a task's time left in business time.

The workflow service counts an SLA in its business calendars (services/workflow/calendars.py).
The console reads the task's calendar through the API once (calendars never change under a key),
computes the business seconds left at render time with the same arithmetic, and hands the page
the calendar's opening intervals of the next days as UTC instants: console/static/countdown.js
then subtracts only the business time that passes, so the countdown stands still at night and on
holidays, and turns amber at the task's warning time and red at its due time.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from starlette.requests import Request

from console.api import Api, ApiProblem
from services.workflow.calendars import BusinessCalendar, CalendarError

# How far ahead the page gets opening intervals: a page left open longer is reloaded (the inbox
# refreshes its rows every 30 s), and a week of intervals is at most 7 x 8 pairs.
AHEAD = dt.timedelta(days=7)
STATES = {"at_risk": "warning", "on_track": "on_track", "breached": "breached"}
SPOKEN = {"on_track": "on track", "warning": "warning: SLA nearly due", "breached": "SLA breached"}


def countdown(seconds: int | None) -> str:
    """Business time left as the page shows it: '3 h 05 min', '12 min', '−1 h 2 min' once breached."""
    if seconds is None:
        return "no SLA"
    minutes = math.floor(seconds / 60) if seconds >= 0 else -math.floor(-seconds / 60)
    sign = "−" if minutes < 0 else ""
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours} h {rest} min" if hours else f"{sign}{rest} min"


async def calendar(request: Request, api: Api, key: str) -> BusinessCalendar | None:
    """The named business calendar, read once per console process (a key never changes its calendar)."""
    built: dict[str, BusinessCalendar] = request.app.state.calendars
    found = built.get(key)
    if found is not None:
        return found
    try:
        doc = await api.get(f"/workflow/v1/calendars/{key}")
        holidays = doc.get("holidays") or {}
        found = BusinessCalendar.build(
            doc["timezone"],
            doc["hours"],
            holidays.get("country"),
            holidays.get("subdivision"),
            doc.get("closed_dates") or [],
            max_periods=None,
        )
    except (ApiProblem, ValueError, KeyError):  # no countdown beats no page
        return None
    built[key] = found
    return found


def _instant(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        found = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def open_intervals(cal: BusinessCalendar, start: dt.datetime, end: dt.datetime) -> list[list[int]]:
    """The calendar's opening intervals between two instants, clipped, as [start, end] epoch seconds."""
    out: list[list[int]] = []
    day = start.astimezone(cal.tz).date() - dt.timedelta(days=1)  # a late shift may cross midnight
    last = end.astimezone(cal.tz).date()
    while day <= last:
        for a, b in cal.intervals_on(day):
            if b > start and a < end:
                out.append([math.floor(max(a, start).timestamp()), math.ceil(min(b, end).timestamp())])
        day += dt.timedelta(days=1)
    return out


def clock(task: dict[str, Any], cal: BusinessCalendar | None, now: dt.datetime) -> dict[str, Any]:
    """The countdown of one task: its state, its text and the data the page's script ticks with.

    Only an open task with a due time and a known calendar ticks; the others show the API's figures."""
    state = STATES.get(str(task.get("sla_state")), str(task.get("sla_state") or "none"))
    minutes = task.get("remaining_business_minutes")
    out: dict[str, Any] = {
        "state": state,
        "text": countdown(minutes * 60 if isinstance(minutes, int) else None),
        "spoken": SPOKEN.get(state, ""),
        "data": None,
    }
    due, warn = _instant(task.get("due_at")), _instant(task.get("warn_at"))
    if task.get("status") != "open" or due is None or cal is None:
        return out
    try:
        left = math.ceil(cal.between(now, due).total_seconds())
    except (CalendarError, ValueError, OverflowError):
        return out
    opening = open_intervals(cal, now, now + AHEAD)
    out["text"] = countdown(left)
    out["data"] = json.dumps(
        {
            "at": round(now.timestamp(), 3),
            "left": left,
            "due": round(due.timestamp(), 3),
            "warn": round(warn.timestamp(), 3) if warn else None,
            "open": opening,
        },
        separators=(",", ":"),
    )
    return out


async def clocks(request: Request, api: Api, tasks: list[dict[str, Any]]) -> None:
    """Put `task["clock"]` on every task (one calendar read per calendar key, the first time)."""
    now = dt.datetime.now(dt.UTC)
    cals: dict[str, BusinessCalendar | None] = {}
    for task in tasks:
        key = str(task.get("calendar") or "")
        if key and key not in cals and task.get("status") == "open" and task.get("due_at"):
            cals[key] = await calendar(request, api, key)
        task["clock"] = clock(task, cals.get(key), now)
