"""Business-time arithmetic across weekends, public holidays, closed dates and both DST changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.workflow.calendars import BusinessCalendar
from shared.errors import Invalid

H = dt.timedelta(hours=1)
OFFICE = {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
BERLIN = BusinessCalendar.build("Europe/Berlin", OFFICE, "DE", "BE", ["2027-12-24"])
NEW_YORK = BusinessCalendar.build("America/New_York", OFFICE, "US")
ALL_DAY = BusinessCalendar.build(
    "Europe/Berlin", {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
)


def local(tz: str, *args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)


def test_friday_afternoon_plus_eight_hours_ends_monday_afternoon():
    start = local("Europe/Berlin", 2027, 2, 5, 15)  # Friday
    assert BERLIN.add(start, 8 * H) == local("Europe/Berlin", 2027, 2, 8, 15)
    assert BERLIN.between(start, local("Europe/Berlin", 2027, 2, 8, 15)) == 8 * H


def test_before_opening_starts_at_opening_and_after_closing_at_the_next_day():
    assert BERLIN.add(local("Europe/Berlin", 2027, 2, 3, 6), H) == local("Europe/Berlin", 2027, 2, 3, 10)
    assert BERLIN.add(local("Europe/Berlin", 2027, 2, 3, 19), H) == local("Europe/Berlin", 2027, 2, 4, 10)
    # Ending exactly at closing time stays at closing time.
    assert BERLIN.add(local("Europe/Berlin", 2027, 2, 3, 9), 8 * H) == local("Europe/Berlin", 2027, 2, 3, 17)


def test_easter_and_the_spring_dst_change_in_berlin():
    # Thu 25 Mar 2027 15:00 CET; Good Friday, the weekend (clocks go forward on Sunday 28th) and
    # Easter Monday are closed; 2 h on Thursday + 6 h on Tuesday 30th, now in CEST (UTC+2).
    start = local("Europe/Berlin", 2027, 3, 25, 15)
    end = BERLIN.add(start, 8 * H)
    assert end == local("Europe/Berlin", 2027, 3, 30, 15)
    assert end == dt.datetime(2027, 3, 30, 13, tzinfo=dt.UTC)
    assert start == dt.datetime(2027, 3, 25, 14, tzinfo=dt.UTC)
    assert BERLIN.between(start, end) == 8 * H


def test_berlin_regional_holiday_and_closed_date():
    # 8 March is Women's Day in Berlin only.
    assert BERLIN.is_closed(dt.date(2027, 3, 8))
    munich = BusinessCalendar.build("Europe/Berlin", OFFICE, "DE", "BY")
    assert not munich.is_closed(dt.date(2027, 3, 8))
    assert BERLIN.is_closed(dt.date(2027, 12, 24))  # an extra closed date
    start = local("Europe/Berlin", 2027, 3, 5, 16)  # Friday
    assert BERLIN.add(start, 2 * H) == local("Europe/Berlin", 2027, 3, 9, 10)
    assert munich.add(start, 2 * H) == local("Europe/Berlin", 2027, 3, 8, 10)


def test_autumn_dst_change_in_berlin():
    start = local("Europe/Berlin", 2027, 10, 29, 16)  # Friday, CEST (UTC+2); clocks go back on Sunday 31st
    end = BERLIN.add(start, 3 * H)
    assert end == local("Europe/Berlin", 2027, 11, 1, 11)
    assert end == dt.datetime(2027, 11, 1, 10, tzinfo=dt.UTC)  # now CET (UTC+1)
    # Wall-clock time between is 67 h local but 68 h elapsed; business time is still 3 h.
    assert end - start == 68 * H
    assert BERLIN.between(start, end) == 3 * H


def test_new_york_both_dst_changes_and_federal_holidays():
    # Spring: Sunday 14 March 2027.
    start = local("America/New_York", 2027, 3, 12, 16)  # Friday, EST (UTC-5)
    end = NEW_YORK.add(start, 2 * H)
    assert end == local("America/New_York", 2027, 3, 15, 10) == dt.datetime(2027, 3, 15, 14, tzinfo=dt.UTC)
    # Autumn: Sunday 7 November 2027; then Veterans Day (Thu 11th) is closed.
    start = local("America/New_York", 2027, 11, 5, 16)
    end = NEW_YORK.add(start, 2 * H)
    assert end == dt.datetime(2027, 11, 8, 15, tzinfo=dt.UTC)  # 10:00 EST
    wed = local("America/New_York", 2027, 11, 10, 16)
    assert NEW_YORK.add(wed, 2 * H) == local("America/New_York", 2027, 11, 12, 10)
    # Thanksgiving (Thu 25th): Wednesday 16:00 + 9 h ends Friday 17:00.
    assert NEW_YORK.add(local("America/New_York", 2027, 11, 24, 16), 9 * H) == local(
        "America/New_York", 2027, 11, 26, 17
    )


def test_an_always_open_calendar_measures_real_time_over_dst_days():
    # The spring-forward day has 23 hours, the fall-back day 25.
    assert ALL_DAY.between(local("Europe/Berlin", 2027, 3, 28, 0), local("Europe/Berlin", 2027, 3, 29, 0)) == 23 * H
    assert ALL_DAY.between(local("Europe/Berlin", 2027, 10, 31, 0), local("Europe/Berlin", 2027, 11, 1, 0)) == 25 * H
    start = local("Europe/Berlin", 2027, 3, 28, 1)
    assert ALL_DAY.add(start, 2 * H) == start + 2 * H


def test_split_shifts_and_negative_spans():
    cal = BusinessCalendar.build("UTC", {"mon": [["09:00", "12:00"], ["13:00", "17:00"]]})
    monday = dt.datetime(2027, 2, 1, 11, tzinfo=dt.UTC)
    assert cal.add(monday, 2 * H) == dt.datetime(2027, 2, 1, 14, tzinfo=dt.UTC)
    assert cal.between(monday + 3 * H, monday) == -2 * H


def test_every_bad_part_of_a_calendar_is_reported_at_once():
    with pytest.raises(Invalid) as err:
        BusinessCalendar.build(
            "Mars/Olympus", {"mon": ["17:00", "09:00"], "funday": ["09:00", "10:00"]}, "DE", "ZZ", ["2027-13-01"]
        )
    fields = {e.field for e in err.value.errors}
    assert fields == {"timezone", "hours.mon[0]", "hours.funday", "holidays.subdivision", "closed_dates[0]"}
    with pytest.raises(Invalid) as err:
        BusinessCalendar.build("UTC", {"sat": []}, "XX")
    assert {e.field for e in err.value.errors} == {"hours", "holidays.country"}


instants = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2028, 12, 31), timezones=st.just(dt.UTC)
)
durations = st.integers(min_value=0, max_value=120 * 3600).map(lambda s: dt.timedelta(seconds=s))
calendars = st.sampled_from([BERLIN, NEW_YORK, ALL_DAY])


@settings(max_examples=150, deadline=None)
@given(cal=calendars, t=instants, a=durations, b=durations)
def test_adding_in_two_steps_equals_adding_at_once(cal, t, a, b):
    assert cal.add(t, a + b) == cal.add(cal.add(t, a), b)


@settings(max_examples=150, deadline=None)
@given(cal=calendars, t=instants, a=durations)
def test_between_inverts_add(cal, t, a):
    end = cal.add(t, a)
    assert end >= t
    assert cal.between(t, end) == a


@settings(max_examples=100, deadline=None)
@given(cal=calendars, t=instants, a=durations, b=durations)
def test_add_is_monotonic(cal, t, a, b):
    lo, hi = sorted((a, b))
    assert cal.add(t, lo) <= cal.add(t, hi)


@settings(max_examples=100, deadline=None)
@given(cal=calendars, t=instants, a=durations, b=durations)
def test_business_time_adds_up_over_consecutive_spans(cal, t, a, b):
    m, end = t + a, t + a + b  # wall-clock instants, not business time
    assert cal.between(t, end) == cal.between(t, m) + cal.between(m, end)
