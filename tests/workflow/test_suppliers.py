"""Suppliers: organisations with contacts and their own calendar; their principals (role
`supplier`, scope `supplier:<id>`) see and act on their own deliverables only, and a supplier's
deliverable is due on its calendar (a holiday refused, a DST change honoured)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.workflow.conftest import ANALYST, MARKETER, MOPS, who
from tests.workflow.test_deliverables import a_request, at, berlin, timers_of

pytestmark = pytest.mark.db


def supplier(supplier_id: str, name: str = "agency") -> object:
    return who(f"{name}-key", "supplier", scopes=(f"supplier:{supplier_id}",))


async def two_suppliers(wf) -> tuple[dict, dict]:
    await berlin(wf)
    acme = await wf.ok(
        "POST",
        "/v1/suppliers",
        MOPS,
        {"name": "Acme Studio", "calendar": "berlin", "contacts": [{"name": "Ann", "email": "ann@acme.example"}]},
        status=201,
    )
    other = await wf.ok("POST", "/v1/suppliers", MOPS, {"name": "Other Print"}, status=201)
    return acme, other


async def test_suppliers_are_registered_by_mops_and_read_by_their_own(wf):
    acme, other = await two_suppliers(wf)
    assert acme["calendar"] == "berlin" and acme["contacts"][0]["email"] == "ann@acme.example"
    assert other["calendar"] == "default"
    assert (await wf.call("POST", "/v1/suppliers", MARKETER, {"name": "x"})).status_code == 403
    r = await wf.call("POST", "/v1/suppliers", MOPS, {"name": "Acme Studio"})
    assert r.status_code == 409, r.text
    for body, field in (
        ({"name": "y", "calendar": "nowhere"}, "calendar"),
        ({"name": "y", "contacts": [{"name": "a", "email": "not-an-email"}]}, "contacts.0.email"),
    ):
        r = await wf.call("POST", "/v1/suppliers", MOPS, body)
        assert r.status_code == 422 and field in {e["field"] for e in r.json()["errors"]}, r.text
    assert [s["name"] for s in (await wf.ok("GET", "/v1/suppliers", ANALYST))["items"]] == [
        "Acme Studio",
        "Other Print",
    ]
    mine = await wf.ok("GET", "/v1/suppliers", supplier(acme["id"]))
    assert [s["id"] for s in mine["items"]] == [acme["id"]]
    assert (await wf.call("GET", f"/v1/suppliers/{other['id']}", supplier(acme["id"]))).status_code == 404
    assert (await wf.ok("GET", f"/v1/suppliers/{acme['id']}", supplier(acme["id"])))["name"] == "Acme Studio"


async def test_a_suppliers_deliverable_is_due_on_its_calendar_across_dst_and_a_holiday(wf):
    acme, _ = await two_suppliers(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    summer = await wf.ok(
        "POST", path, MARKETER, {"name": "Print", "supplier_id": acme["id"], "due_date": "2027-10-29"}, status=201
    )
    assert summer["sla_kind"] == "underpinning_contract" and summer["calendar"] == "berlin"
    assert at(summer["due_at"]) == dt.datetime(2027, 10, 29, 15, tzinfo=dt.UTC)  # 17:00 CEST
    winter = await wf.ok(
        "POST", path, MARKETER, {"name": "Post", "supplier_id": acme["id"], "due_date": "2027-11-01"}, status=201
    )
    assert at(winter["due_at"]) == dt.datetime(2027, 11, 1, 16, tzinfo=dt.UTC)  # 17:00 CET
    r = await wf.call("POST", path, MARKETER, {"name": "Xmas", "supplier_id": acme["id"], "due_date": "2027-12-24"})
    assert r.status_code == 201, r.text  # Christmas Eve is a working day in DE ...
    r = await wf.call("POST", path, MARKETER, {"name": "Xmas", "supplier_id": acme["id"], "due_date": "2027-12-27"})
    assert r.status_code == 201, r.text
    r = await wf.call("POST", path, MARKETER, {"name": "Xmas", "supplier_id": acme["id"], "due_date": "2027-12-26"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "due_date", r.text  # ... the 26th is not
    hours = await wf.ok(
        "POST", path, MARKETER, {"name": "Copy", "supplier_id": acme["id"], "business_hours": "16"}, status=201
    )
    assert hours["calendar"] == "berlin" and at(hours["due_at"]) - at(hours["created_at"]) >= dt.timedelta(hours=16)
    # The exact instants, with the timers firing at them: test_an_underpinning_contract_on_the_suppliers_calendar_...


async def test_a_supplier_acts_only_on_its_own_work_and_cannot_guess_another_ones(wf):
    acme, other = await two_suppliers(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    mine = await wf.ok(
        "POST", path, MARKETER, {"name": "A", "supplier_id": acme["id"], "business_hours": "8"}, status=201
    )
    theirs = await wf.ok(
        "POST", path, MARKETER, {"name": "B", "supplier_id": other["id"], "business_hours": "8"}, status=201
    )
    acme_key = supplier(acme["id"])
    listed = await wf.ok("GET", "/v1/deliverables", acme_key, params={"assignee": "me"})
    assert [d["id"] for d in listed["items"]] == [mine["id"]]
    # Another supplier's deliverable does not exist for acme: read, act, ask all 404, nothing written.
    assert (await wf.call("GET", f"/v1/deliverables/{theirs['id']}", acme_key)).status_code == 404
    for action in ("accept", "start", "deliver", "questions"):
        body = {"body": "?"} if action == "questions" else {}
        r = await wf.call("POST", f"/v1/deliverables/{theirs['id']}/{action}", acme_key, body)
        assert r.status_code == 404, (action, r.text)
    assert (await wf.ok("GET", f"/v1/deliverables/{theirs['id']}", MARKETER))["status"] == "open"
    # Nor the request, nor anything else of the workflow, nor a scope-less supplier anything at all.
    assert (await wf.call("GET", f"/v1/requests/{req['id']}", acme_key)).status_code == 403
    assert (await wf.call("GET", path, acme_key)).status_code == 404  # visible to the request's readers only
    for path_ in ("/v1/requests", "/v1/tasks", "/v1/instances", "/v1/calendars", "/v1/definitions", "/v1/reports/sla"):
        assert (await wf.call("GET", path_, acme_key)).status_code == 403, path_
    assert (await wf.call("POST", "/v1/instances", acme_key, {})).status_code == 403
    assert (await wf.call("POST", f"/v1/requests/{req['id']}/comments", acme_key, {"body": "hi"})).status_code == 403
    bare = who("nokey", "supplier")
    assert (await wf.ok("GET", "/v1/deliverables", bare))["items"] == []
    assert (await wf.call("GET", f"/v1/deliverables/{mine['id']}", bare)).status_code == 404
    # Its own work: accept, ask, start, deliver a link; the review is the requester's.
    assert (await wf.ok("POST", f"/v1/deliverables/{mine['id']}/accept", acme_key, {}))["status"] == "accepted"
    q = await wf.ok("POST", f"/v1/deliverables/{mine['id']}/questions", acme_key, {"body": "CMYK or RGB?"}, status=201)
    assert q["deliverable_id"] == mine["id"] and q["mentions"] == [MARKETER.subject]
    await wf.ok("POST", f"/v1/deliverables/{mine['id']}/start", acme_key, {})
    link = "https://files.acme.example/a.pdf"
    delivered = await wf.ok("POST", f"/v1/deliverables/{mine['id']}/deliver", acme_key, {"link": link})
    assert delivered["link"] == link and delivered["sla_state"] == "paused"
    for action in ("review", "approve", "cancel"):
        assert (await wf.call("POST", f"/v1/deliverables/{mine['id']}/{action}", acme_key, {})).status_code == 403
    r = await wf.call("POST", f"/v1/deliverables/{mine['id']}/send-back", acme_key, {"reason": "x"})
    assert r.status_code == 403
    assert (await wf.call("POST", f"/v1/deliverables/{mine['id']}/accept", MARKETER, {})).status_code == 409
    assert (await wf.ok("POST", f"/v1/deliverables/{mine['id']}/approve", MARKETER, {}))["status"] == "done"
    r = await wf.call("POST", f"/v1/deliverables/{mine['id']}/deliver", acme_key, {"link": "javascript:alert(1)"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "link", r.text


# A print shop in Berlin: weekdays 09:00-17:00 and a Sunday night shift 00:00-06:00, German public holidays.
PRESS_HOURS = {**{d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")}, "sun": ["00:00", "06:00"]}
# Created Thursday 25 March 2027, 15:00 CET. By hand, the business intervals that follow (UTC):
PRESS_INTERVALS_FROM_CREATION = [
    (dt.datetime(2027, 3, 25, 14, tzinfo=dt.UTC), dt.datetime(2027, 3, 25, 16, tzinfo=dt.UTC)),  # Thu 15-17 CET: 2 h
    # Fri 26 March: Good Friday, a public holiday in all of Germany; Sat 27: closed.
    # Sun 28 March: the clocks go from 02:00 CET to 03:00 CEST, so 00:00 CET-06:00 CEST is 5 hours, not 6.
    (dt.datetime(2027, 3, 27, 23, tzinfo=dt.UTC), dt.datetime(2027, 3, 28, 4, tzinfo=dt.UTC)),
    # Mon 29 March: Easter Monday, a public holiday.
    (dt.datetime(2027, 3, 30, 7, tzinfo=dt.UTC), dt.datetime(2027, 3, 30, 15, tzinfo=dt.UTC)),  # Tue 09-17 CEST
]
CREATED = PRESS_INTERVALS_FROM_CREATION[0][0]


def business_instant(hours: dt.timedelta) -> dt.datetime:
    """Walk the hand-written intervals: the instant `hours` of business time after CREATED."""
    left = hours
    for a, b in PRESS_INTERVALS_FROM_CREATION:
        if b - a >= left:
            return a + left
        left -= b - a
    raise AssertionError("the hand-written intervals are too short")


async def test_an_underpinning_contract_on_the_suppliers_calendar_across_a_holiday_and_the_dst_change(wf, monkeypatch):
    """10 business hours with a warning at half: the holidays (Good Friday, Easter Monday) are skipped,
    the missing hour of the spring-forward night is no business time, and the warning and breach timers
    fire exactly at those instants (not a microsecond before)."""
    await wf.ok(
        "POST",
        "/v1/calendars",
        MOPS,
        {"key": "berlin-press", "timezone": "Europe/Berlin", "hours": PRESS_HOURS, "holidays": {"country": "DE"}},
        status=201,
    )
    press = await wf.ok("POST", "/v1/suppliers", MOPS, {"name": "Nachtdruck", "calendar": "berlin-press"}, status=201)
    req = await a_request(wf)
    due = business_instant(dt.timedelta(hours=10))
    warn = business_instant(dt.timedelta(hours=5))
    # The hand walk, spelled out: 2 h on Thursday, 5 h on the Sunday night, 3 h on Tuesday morning.
    assert due == dt.datetime(2027, 3, 30, 10, tzinfo=dt.UTC)  # Tuesday 12:00 CEST
    assert warn == dt.datetime(2027, 3, 28, 2, tzinfo=dt.UTC)  # Sunday 04:00 CEST, 3 h into the 5-hour night
    monkeypatch.setattr("services.workflow.deliverables.utcnow", lambda: CREATED)
    d = await wf.ok(
        "POST",
        f"/v1/requests/{req['id']}/deliverables",
        MARKETER,
        {"name": "Poster run", "supplier_id": press["id"], "business_hours": "10", "warn_at": "0.5"},
        status=201,
    )
    assert d["sla_kind"] == "underpinning_contract" and d["calendar"] == "berlin-press"
    assert at(d["created_at"]) == CREATED
    assert at(d["due_at"]) == due and at(d["warn_at"]) == warn
    assert d["remaining_business_minutes"] == 600 and d["sla_state"] == "on_track"
    assert await timers_of(wf, d["id"]) == {"pending": 2}

    scheduler = wf.runtime.scheduler
    tick = dt.timedelta(microseconds=1)
    await scheduler.fire_due(warn - tick)
    assert await wf.events("workflow.deliverable.sla_warning") == []
    await scheduler.fire_due(warn)
    warnings = await wf.events("workflow.deliverable.sla_warning")
    assert [e["data"]["deliverable_id"] for e in warnings] == [d["id"]]
    assert await timers_of(wf, d["id"]) == {"fired": 1, "pending": 1}
    await scheduler.fire_due(due - tick)
    assert await wf.events("workflow.deliverable.sla_breached") == []
    await scheduler.fire_due(due)
    breaches = await wf.events("workflow.deliverable.sla_breached")
    assert len(breaches) == 1 and breaches[0]["data"]["deliverable_id"] == d["id"]
    assert breaches[0]["data"]["sla_kind"] == "underpinning_contract" and at(breaches[0]["data"]["due_at"]) == due
    assert await timers_of(wf, d["id"]) == {"fired": 2}
    await scheduler.fire_due(due + dt.timedelta(days=30))  # fired once: nothing left
    assert len(await wf.events("workflow.deliverable.sla_breached")) == 1
    seen = await wf.ok("GET", f"/v1/deliverables/{d['id']}", supplier(press["id"]))
    assert seen["escalated"] is True and seen["warn_at"] == d["warn_at"] and seen["due_at"] == d["due_at"]
