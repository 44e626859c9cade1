"""Deliverables of a request: due times in business time on a calendar (a holiday refused, a DST
change honoured), their status moved only by the part whose turn it is, nothing written on refusal."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from services.workflow.calendars import BusinessCalendar
from services.workflow.models import infra
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


async def timers_of(wf, subject_id: str) -> dict[str, int]:
    t = infra.timers
    async with wf.runtime.transaction(readonly=True) as s:
        q = select(t.c.status, func.count()).where(t.c.subject_id == subject_id).group_by(t.c.status)
        return {status: n for status, n in (await s.execute(q)).all()}


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
        ({"name": "x", "business_hours": "8"}, "owner"),
        ({"name": "x", "owner": "o", "supplier_id": "s-1", "business_hours": "8"}, "supplier_id"),
        ({"name": "x", "supplier_id": "nobody", "business_hours": "8"}, "supplier_id"),
        ({"name": "x", "owner": "o", "business_hours": "8", "warn_at": "1"}, "warn_at"),
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
        {"name": "Hero", "owner": "olga", "team": "design", "business_hours": "8"},
        status=201,
    )
    assert d["sla_kind"] == "ola" and d["team"] == "design" and d["warn_at"] is not None

    async def move(as_, action, code=200, body=None):
        r = await wf.call("POST", f"/v1/deliverables/{d['id']}/{action}", as_, body or {})
        assert r.status_code == code, r.text
        return r.json()

    await move(MARKETER, "start", 403)  # the owner starts
    await move(OWNER, "deliver", 409)  # not started yet
    assert (await move(OWNER, "accept"))["status"] == "accepted"
    await move(OWNER, "accept", 409)
    assert (await move(OWNER, "start"))["status"] == "in_progress"
    delivered = await move(OWNER, "deliver", body={"link": "https://drive.example/hero"})
    assert delivered["status"] == "delivered" and delivered["sla_state"] == "paused"
    assert delivered["link"] == "https://drive.example/hero"
    await move(OWNER, "approve", 403)  # the owner does not accept their own delivery
    await move(APPROVER_EMEA, "approve", 403)  # in scope, but neither owner nor requester nor mops
    await move(MARKETER, "send-back", 422)  # a reason is required
    back = await move(MARKETER, "send-back", body={"reason": "logo too small"})
    assert back["status"] == "in_progress" and back["rework_rounds"] == 1 and back["sla_state"] == "on_track"
    await move(OWNER, "deliver")
    done = await move(who("emma", "mops", scopes=("region:EMEA",)), "approve")
    assert done["status"] == "done" and done["finished_at"] is not None and done["version"] == 7
    assert done["sla_state"] == "met" and done["rework_rounds"] == 1
    await move(MARKETER, "cancel", 409)
    await move(APPROVER_US, "cancel", 404)  # out of scope: as if it did not exist
    stale = await wf.call("POST", f"/v1/deliverables/{d['id']}/cancel", MARKETER, {}, headers={"If-Match": '"1"'})
    assert stale.status_code == 412, stale.text
    verbs = [e["type"].rsplit(".", 1)[1] for e in await wf.events() if ".deliverable." in e["type"]]
    assert verbs == ["created", "accepted", "started", "delivered", "sent_back", "delivered", "approved"]
    approved = (await wf.events("workflow.deliverable.approved"))[0]["data"]
    assert approved["on_time"] is True and approved["lateness_business_hours"] == 0.0
    assert (await wf.events("workflow.deliverable.started"))[0]["data"]["on_time"] is None
    sent_back = (await wf.events("workflow.deliverable.sent_back"))[0]["data"]
    assert sent_back["reason"] == "logo too small" and sent_back["rework_rounds"] == 1
    view = await wf.ok("GET", f"/v1/requests/{req['id']}", MARKETER)
    actions = [h["action"] for h in view["instance"]["history"] if h["action"].startswith("deliverable_")]
    assert actions == [f"deliverable_{v}" for v in verbs]
    assert await timers_of(wf, d["id"]) == {"cancelled": 4}  # armed twice (created, sent back), paused, approved


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


async def test_the_requester_reviews_a_delivery_in_its_own_state_with_the_clock_paused(wf):
    req = await a_request(wf)
    d = await wf.ok(
        "POST",
        f"/v1/requests/{req['id']}/deliverables",
        MARKETER,
        {"name": "Hero", "owner": "olga", "business_hours": "8"},
        status=201,
    )

    async def move(as_, action, code=200, body=None):
        r = await wf.call("POST", f"/v1/deliverables/{d['id']}/{action}", as_, body or {})
        assert r.status_code == code, r.text
        return r.json()

    await move(MARKETER, "review", 409)  # nothing delivered yet
    await move(OWNER, "start")
    delivered = await move(OWNER, "deliver", body={"link": "https://drive.example/hero"})
    await move(OWNER, "review", 403)  # the assignee does not review its own delivery
    await move(APPROVER_US, "review", 404)
    reviewing = await move(MARKETER, "review")
    assert reviewing["status"] == "in_review" and reviewing["sla_state"] == "paused"
    assert reviewing["remaining_business_minutes"] == delivered["remaining_business_minutes"]
    assert reviewing["due_at"] == delivered["due_at"]
    assert await timers_of(wf, d["id"]) == {"cancelled": 2}  # paused on delivery; the review arms nothing
    await move(MARKETER, "review", 409)  # once
    await move(OWNER, "deliver", 409)
    mine = await wf.ok("GET", "/v1/deliverables", OWNER, params={"assignee": "me", "status": "in_review"})
    assert [i["id"] for i in mine["items"]] == [d["id"]]
    back = await move(MARKETER, "send-back", body={"reason": "colours"})
    assert back["status"] == "in_progress" and back["rework_rounds"] == 1 and back["sla_state"] == "on_track"
    assert await timers_of(wf, d["id"]) == {"cancelled": 2, "pending": 2}  # the clock runs again
    await move(OWNER, "deliver")
    await move(MARKETER, "review")
    done = await move(MARKETER, "approve")
    assert done["status"] == "done" and done["rework_rounds"] == 1 and done["sla_state"] == "met"
    verbs = [e["type"].rsplit(".", 1)[1] for e in await wf.events() if ".deliverable." in e["type"]]
    assert verbs == [
        "created",
        "started",
        "delivered",
        "review_started",
        "sent_back",
        "delivered",
        "review_started",
        "approved",
    ]
    started = (await wf.events("workflow.deliverable.review_started"))[0]["data"]
    assert started["status"] == "in_review" and started["actor"] == MARKETER.subject
    page = await wf.ok("GET", f"/v1/requests/{req['id']}", MARKETER)
    assert "deliverable_review_started" in [h["action"] for h in page["instance"]["history"]]
