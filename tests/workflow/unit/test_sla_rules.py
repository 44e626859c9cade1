"""SLA arithmetic on business time, without a database: windows, deadlines from the context, the
clock paused and resumed."""

from __future__ import annotations

import datetime as dt

import pytest

from services.workflow import sla
from services.workflow.calendars import BusinessCalendar
from services.workflow.instances import Task
from shared.errors import Conflict, Invalid

OFFICE = {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}
MON_9 = dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC)  # a Monday


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return BusinessCalendar.build("UTC", OFFICE, None, None, [])


@pytest.fixture(scope="module")
def berlin() -> BusinessCalendar:
    return BusinessCalendar.build("Europe/Berlin", OFFICE, "DE", "BE", [])


def test_business_hours_run_over_nights_and_weekends(cal):
    friday_3pm = dt.datetime(2027, 3, 5, 15, tzinfo=dt.UTC)
    w = sla.window({"business_hours": "8", "warn_at": "0.75"}, cal, {}, friday_3pm)
    assert w.due_at == dt.datetime(2027, 3, 8, 15, tzinfo=dt.UTC)  # 2 h on Friday, 6 h on Monday
    assert w.warn_at == dt.datetime(2027, 3, 8, 13, tzinfo=dt.UTC)  # 6 business hours in
    assert w.seconds == 8 * 3600


def test_a_deadline_date_means_the_end_of_that_day_in_the_calendars_zone(berlin):
    w = sla.window(
        {"deadline_from_context": "notice_deadline", "warn_at": "0.5"}, berlin, {"notice_deadline": "2027-03-03"}, MON_9
    )
    assert w.due_at == dt.datetime(2027, 3, 3, 23, tzinfo=dt.UTC)  # midnight in Berlin (UTC+1)
    # Monday 10:00-17:00 Berlin and all of Tuesday and Wednesday: 7 + 8 + 8 business hours
    assert w.seconds == (7 + 8 + 8) * 3600
    assert w.warn_at is not None and MON_9 < w.warn_at < w.due_at


def test_a_deadline_already_passed_gives_no_time_and_no_warning(cal):
    w = sla.window({"deadline_from_context": "d"}, cal, {"d": "2027-02-01"}, MON_9)
    assert w.seconds == 0 and w.warn_at is None and w.due_at < MON_9


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "is required"),
        ("soon", "not an ISO date"),
        ("0001-01-01", "0001-01-01"),
        ("2099-01-01", "within 10 years"),
    ],
)
def test_a_bad_deadline_names_its_context_field(cal, raw, message):
    with pytest.raises(Invalid, match=message) as err:
        sla.deadline(raw, cal, "context.notice_deadline", MON_9)
    assert err.value.errors[0].field == "context.notice_deadline"


def test_a_datetime_deadline_without_offset_is_read_in_the_calendars_zone(berlin):
    assert sla.deadline("2027-03-02T12:00:00", berlin, "d", MON_9) == dt.datetime(2027, 3, 2, 11, tzinfo=dt.UTC)
    assert sla.deadline("2027-03-02T12:00:00Z", berlin, "d", MON_9) == dt.datetime(2027, 3, 2, 12, tzinfo=dt.UTC)


def test_a_paused_task_resumes_with_the_business_time_it_had_left(cal):
    due = MON_9 + dt.timedelta(hours=8)
    paused_at = MON_9 + dt.timedelta(hours=3)
    t = Task.from_row(
        {
            **{f: None for f in Task.__slots__},
            "warn_at": MON_9 + dt.timedelta(hours=6),
            "due_at": due,
            "warned": False,
            "breached": False,
            "sla_seconds": 8 * 3600,
        }
    )
    remaining, warn_remaining = sla.left(t, cal, paused_at)
    assert (remaining, warn_remaining) == (5 * 3600, 3 * 3600)
    resumed_at = dt.datetime(2027, 3, 3, 16, tzinfo=dt.UTC)  # Wednesday 16:00
    w = sla.resumed(sla.Paused(remaining, warn_remaining, False, False, 8 * 3600), cal, resumed_at)
    assert w.due_at == dt.datetime(2027, 3, 4, 13, tzinfo=dt.UTC)  # 1 h Wednesday, 4 h Thursday
    assert w.warn_at == dt.datetime(2027, 3, 4, 11, tzinfo=dt.UTC)
    assert w.seconds == 8 * 3600
    # A warning already given is not given again.
    assert sla.resumed(sla.Paused(remaining, None, True, False, 8 * 3600), cal, resumed_at).warn_at is None


def test_a_stored_sla_its_calendar_cannot_give_is_a_conflict_naming_the_stage():
    closed = BusinessCalendar.build("UTC", {"mon": ["09:00", "09:01"]}, None, None, [])
    with pytest.raises(Conflict) as err, sla.stored_config("stages[0].sla"):
        closed.add(MON_9, dt.timedelta(hours=8760))
    assert err.value.errors[0].field == "stages[0].sla"
