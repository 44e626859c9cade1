"""Deliverables of a request: due times in business time on a calendar (a holiday refused, a DST
change honoured), their status moved only by the part whose turn it is, nothing written on refusal."""

from __future__ import annotations

import datetime as dt

import pytest

from services.workflow.calendars import BusinessCalendar
from tests.workflow.conftest import APPROVER_EMEA, APPROVER_US, MARKETER, MOPS, who
from tests.workflow.test_requests import SAMPLES, submit

pytestmark = pytest.mark.db

OWNER = who("olga", "marketer", scopes=("region:EMEA",))
WEEKDAYS = {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


async def a_request(wf) -> dict:
    r = await submit(wf, "creative-request", SAMPLES["creative-request"][0])
    assert r.status_code == 201, r.text
    return r.json()


async def berlin(wf) -> None:
    body = {"key": "berlin", "timezone": "Europe/Berlin", "hours": WEEKDAYS, "holidays": {"country": "DE"}}
    await wf.ok("POST", "/v1/calendars", MOPS, body, status=201)


def at(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


async def test_a_due_date_is_the_end_of_that_business_day_across_dst_and_holidays(wf):
    await berlin(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['number']}/deliverables"
    summer = await wf.ok(
        "POST",
        path,
        MARKETER,
        {"name": "Hero", "owner": "olga", "due_date": "2027-10-29", "calendar": "berlin"},
        status=201,
    )
    assert at(summer["due_at"]) == dt.datetime(2027, 10, 29, 15, tzinfo=dt.UTC)  # 17:00 CEST
    winter = await wf.ok(
        "POST",
        path,
        MARKETER,
        {"name": "Banner", "owner": "olga", "due_date": "2027-11-01", "calendar": "berlin"},
        status=201,
    )
    assert at(winter["due_at"]) == dt.datetime(2027, 11, 1, 16, tzinfo=dt.UTC)  # 17:00 CET, after the change
    for day in ("2027-12-25", "2027-10-30"):  # Christmas, a Saturday
        r = await wf.call("POST", path, MARKETER, {"name": "x", "owner": "olga", "due_date": day, "calendar": "berlin"})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "due_date", r.text
    listed = await wf.ok("GET", path, MARKETER)
    assert [d["name"] for d in listed["items"]] == ["Hero", "Banner"]
    assert {d["sla_state"] for d in listed["items"]} == {"on_track"}


async def test_business_hours_run_on_the_definitions_calendar(wf):
    req = await a_request(wf)
    d = await wf.ok(
        "POST",
        f"/v1/requests/{req['id']}/deliverables",
        MARKETER,
        {"name": "Copy", "owner": "olga", "business_hours": "12"},
        status=201,
    )
    assert d["calendar"] == "default" and d["business_hours"] == "12"
    expected = BusinessCalendar.build("UTC", WEEKDAYS).add(at(d["created_at"]), dt.timedelta(hours=12))
    assert at(d["due_at"]) == expected
    assert at(d["due_at"]) - at(d["created_at"]) > dt.timedelta(hours=12)  # nights (and weekends) do not count
    assert 12 * 60 - 1 <= d["remaining_business_minutes"] <= 12 * 60


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "owner": "o"}, "due_date"),
        ({"name": "x", "owner": "o", "due_date": "2027-11-01", "business_hours": "8"}, "due_date"),
        ({"name": "x", "owner": "o", "business_hours": "8", "calendar": "nowhere"}, "calendar"),
        ({"name": "x", "owner": "o", "business_hours": "0"}, "business_hours"),
        ({"name": "", "owner": "o", "business_hours": "8"}, "name"),
    ],
)
async def test_a_bad_deliverable_names_its_field_and_writes_nothing(wf, body, field):
    req = await a_request(wf)
    r = await wf.call("POST", f"/v1/requests/{req['id']}/deliverables", MARKETER, body)
    assert r.status_code == 422 and field in {e["field"] for e in r.json()["errors"]}, r.text
    assert (await wf.ok("GET", f"/v1/requests/{req['id']}/deliverables", MARKETER))["items"] == []


async def test_each_part_moves_a_deliverable_in_its_turn(wf):
    req = await a_request(wf)
    d = await wf.ok(
        "POST",
        f"/v1/requests/{req['id']}/deliverables",
        MARKETER,
        {"name": "Hero", "owner": "olga", "business_hours": "8"},
        status=201,
    )
    path = f"/v1/deliverables/{d['id']}/status"

    async def move(as_, status, code=200):
        r = await wf.call("POST", path, as_, {"status": status})
        assert r.status_code == code, r.text
        return r.json()

    await move(MARKETER, "in_progress", 403)  # the owner starts
    await move(OWNER, "delivered", 409)  # not started yet
    assert (await move(OWNER, "in_progress"))["status"] == "in_progress"
    delivered = await move(OWNER, "delivered")
    assert delivered["status"] == "delivered" and delivered["sla_state"] == "met"
    await move(OWNER, "done", 403)  # the owner does not accept their own delivery
    await move(APPROVER_EMEA, "done", 403)  # in scope, but neither owner nor requester nor mops
    assert (await move(MARKETER, "in_progress"))["status"] == "in_progress"  # sent back
    await move(OWNER, "delivered")
    done = await move(who("emma", "mops", scopes=("region:EMEA",)), "done")
    assert done["status"] == "done" and done["finished_at"] is not None and done["version"] == 6
    await move(MARKETER, "cancelled", 409)
    await move(APPROVER_US, "cancelled", 404)  # out of scope: as if it did not exist
    stale = await wf.call("POST", path, MARKETER, {"status": "cancelled"}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412, stale.text


async def test_deliverables_of_an_out_of_scope_request_are_not_found(wf):
    req = await a_request(wf)
    body = {"name": "x", "owner": "o", "business_hours": "8"}
    assert (await wf.call("POST", f"/v1/requests/{req['id']}/deliverables", APPROVER_US, body)).status_code == 404
    assert (await wf.call("GET", f"/v1/requests/{req['id']}/deliverables", APPROVER_US)).status_code == 404
    assert (await wf.call("POST", f"/v1/requests/{req['id']}/deliverables", APPROVER_EMEA, body)).status_code == 403


async def test_a_rejected_or_cancelled_request_takes_no_new_deliverables(wf):
    req = await a_request(wf)
    await wf.ok("POST", f"/v1/instances/{req['instance_id']}/cancel", MARKETER, {})
    body = {"name": "x", "owner": "o", "business_hours": "8"}
    r = await wf.call("POST", f"/v1/requests/{req['id']}/deliverables", MARKETER, body)
    assert r.status_code == 409 and "cancelled" in r.json()["detail"], r.text
    assert (await wf.ok("GET", f"/v1/requests/{req['id']}/deliverables", MARKETER))["items"] == []
