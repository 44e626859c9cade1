"""Fuzzer findings: input at the edges (dates, business time, nesting, integers) is a 4xx naming the
field, never a 500 or a walk over centuries of days, and nothing is written."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from services.workflow.models import calendars, definitions, history, infra, instances, tasks
from shared.db import utcnow
from tests.workflow.conftest import ADMIN, APPROVER_ALL, MARKETER, MOPS

pytestmark = pytest.mark.db

SUBJECT = {"type": "commitment", "id": "c-1", "service": "budget"}


async def counts(wf) -> dict[str, int]:
    out = {}
    async with wf.runtime.transaction(readonly=True) as s:
        for t in (calendars, definitions, instances, tasks, history, infra.outbox, infra.timers):
            out[t.name] = await s.scalar(select(func.count()).select_from(t))
    return out


def problem(r, status: int, field: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert field in {e["field"] for e in body["errors"]}, body
    return body


async def deadline_definition(wf, key: str = "renewal") -> None:
    await wf.ok("POST", "/v1/definitions", ADMIN, {
        "key": key, "name": key,
        "stages": [{"name": "Review", "assignees": {"roles": ["approver"]},
                    "sla": {"deadline_from_context": "due"}}],
    }, status=201)


def start_body(key: str, context: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"definition_key": key, "subject": SUBJECT, "context": context, **kw}


def nest(levels: int) -> dict[str, Any]:
    """An object `levels` objects deep (the outermost counts as one)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# ------------------------------------------------------------------ 1. context deadlines

@pytest.mark.parametrize("due", [
    "9999-12-31", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-01:00",  # overflowed
    "3000-01-01", "0001-01-01",  # outside shared.bounds (walked centuries)
    "2999-12-31", "1900-01-01", "2999-12-31T23:59:59-01:00",  # inside the bounds, but decades away
])
async def test_a_context_deadline_out_of_range_or_decades_away_is_a_422(wf, due):
    await deadline_definition(wf)
    before = await counts(wf)
    r = await wf.call("POST", "/v1/instances", MARKETER, start_body("renewal", {"due": due, "region": "EMEA"}))
    body = problem(r, 422, "context.due")
    assert due in body["detail"]
    assert await counts(wf) == before


async def test_a_deadline_within_ten_years_works_and_shows_in_the_inbox(wf):
    await deadline_definition(wf)
    far = (dt.date.today() + dt.timedelta(days=9 * 365)).isoformat()
    past = (dt.date.today() - dt.timedelta(days=9 * 365)).isoformat()
    for i in range(20):
        await wf.start("renewal", context={"due": far if i % 2 else past, "region": "EMEA"}, subject_id=f"c-{i}")
    inbox = await wf.ok("GET", "/v1/tasks", APPROVER_ALL, params={"limit": 500})
    assert len(inbox["items"]) == 20
    assert {t["sla_state"] for t in inbox["items"]} == {"breached", "on_track"}


async def test_resubmitting_a_deadline_out_of_range_is_a_422_and_changes_nothing(wf):
    await deadline_definition(wf)
    due = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    inst = await wf.start("renewal", context={"due": due, "region": "EMEA"})
    paused = await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/request-changes", APPROVER_ALL, {})
    before = await counts(wf)
    for bad in ("9999-12-31", "0001-01-01T00:00:00+14:00", "3000-01-01"):
        r = await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": {"due": bad}})
        problem(r, 422, "context.due")
    assert await counts(wf) == before
    again = await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER)
    assert again["status"] == "changes_requested" and again["version"] == paused["version"]
    assert again["context"]["due"] == due


# --------------------------------------------------- 2. business time a calendar cannot give

async def sparse_calendar(wf) -> None:
    await wf.ok("POST", "/v1/calendars", ADMIN,
                {"key": "sparse", "timezone": "UTC", "hours": {"mon": ["00:00", "00:01"]}}, status=201)


@pytest.mark.parametrize("hours", ["100000", "5E+4", "1e5", 8761])
async def test_business_hours_above_a_year_are_a_422(wf, hours):
    before = await counts(wf)
    r = await wf.call("POST", "/v1/definitions", ADMIN, {
        "key": "slow", "name": "slow",
        "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"business_hours": hours}}],
    })
    problem(r, 422, "stages.0.sla.business_hours")
    assert await counts(wf) == before


async def test_an_sla_the_calendar_cannot_give_within_ten_years_is_refused_at_definition_time(wf):
    await sparse_calendar(wf)  # one minute a week: 100 hours take 115 years
    before = await counts(wf)
    r = await wf.call("POST", "/v1/definitions", ADMIN, {
        "key": "slow", "name": "slow", "calendar": "sparse",
        "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"business_hours": "100"}}],
    })
    body = problem(r, 422, "stages[0].sla.business_hours")
    assert "10 years" in body["detail"]
    assert await counts(wf) == before
    # One that fits is fine.
    await wf.ok("POST", "/v1/definitions", ADMIN, {
        "key": "slow", "name": "slow", "calendar": "sparse",
        "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}, "sla": {"business_hours": "1"}}],
    }, status=201)


async def test_a_calendar_closed_for_years_is_a_422(wf):
    first_sunday = dt.date(2027, 1, 3)
    body = {"key": "sundays", "timezone": "UTC", "hours": {"sun": ["09:00", "17:00"]},
            "closed_dates": [(first_sunday + dt.timedelta(weeks=i)).isoformat() for i in range(1000)]}
    before = await counts(wf)
    r = await wf.call("POST", "/v1/calendars", ADMIN, body)
    assert "from 2026-12-28 to 2046-03-03" in problem(r, 422, "closed_dates")["detail"]  # Monday to Saturday
    r = await wf.call("POST", "/v1/calendars", ADMIN, {**body, "closed_dates": ["0001-01-01", "2027-01-03",
                                                                              "9999-12-31"]})
    assert {e["field"] for e in problem(r, 422, "closed_dates[0]")["errors"]} == {"closed_dates[0]",
                                                                                 "closed_dates[2]"}
    fullwidth = {**body, "closed_dates": [], "hours": {"sun": ["０９:00", "17:00"]}}
    problem(await wf.call("POST", "/v1/calendars", ADMIN, fullwidth), 422, "hours.sun[0]")
    assert await counts(wf) == before
    # A year of closed Sundays is still a calendar (a long refurbishment, say).
    await wf.ok("POST", "/v1/calendars", ADMIN, {**body, "closed_dates": body["closed_dates"][:50]}, status=201)


async def test_a_stored_definition_its_calendar_cannot_serve_is_a_409_and_writes_nothing(wf):
    """Definitions published before the check (or on a calendar stored before it) fail as a conflict."""
    await sparse_calendar(wf)
    async with wf.runtime.transaction() as s:
        this_sunday = dt.date.today() + dt.timedelta(days=6 - dt.date.today().weekday())
        sundays = [(this_sunday + dt.timedelta(weeks=i)).isoformat() for i in range(1000)]
        await s.execute(insert(calendars).values(
            id=str(uuid.uuid4()), key="sundays", timezone="UTC", hours={"sun": ["09:00", "17:00"]}, holidays={},
            closed_dates=sundays, version=1, created_at=utcnow(), created_by="legacy"))
        for key, cal, hours in (("legacy-sparse", "sparse", "100000"), ("legacy-sundays", "sundays", "8")):
            await s.execute(insert(definitions).values(
                id=str(uuid.uuid4()), key=key, version=1, name=key, description=None, trigger=None,
                trigger_event=None, priority=0, calendar=cal, created_at=utcnow(), created_by="legacy",
                stages=[{"name": "Review", "mode": "any", "quorum": None, "escalation": None, "auto_approve": None,
                         "assignees": {"roles": ["approver"], "users": [], "scope_from_context": []},
                         "sla": {"business_hours": hours, "deadline_from_context": None, "calendar": cal,
                                 "warn_at": "0.75"}}]))
    before = await counts(wf)
    for key in ("legacy-sparse", "legacy-sundays"):
        r = await wf.call("POST", "/v1/instances", MARKETER, start_body(key, {"region": "EMEA"}))
        problem(r, 409, "stages[0].sla")
    assert await counts(wf) == before


# ------------------------------------------------------------------------ 3. deep context

async def test_deeply_nested_json_is_a_422_naming_the_field(wf):
    before = await counts(wf)
    for levels in (33, 500):
        r = await wf.call("POST", "/v1/instances", MARKETER, start_body("budget-approval", nest(levels)))
        problem(r, 422, "context")
    r = await wf.call("POST", "/v1/definitions", ADMIN, {
        "key": "deep", "name": "deep", "stages": [{"name": "A", "assignees": {"roles": ["approver"]},
                                                  "auto_approve": {"field": "x", "op": "eq", "value": nest(300)}}],
    })
    problem(r, 422, "stages.0.auto_approve")
    r = await wf.call("POST", "/v1/definitions", ADMIN, {
        "key": "deep", "name": "deep", "stages": [{"name": "A", "assignees": {"roles": ["approver"]}}],
        "trigger": {"event": "e", "conditions": [{"field": "x", "op": "in", "value": [nest(300)]}]},
    })
    problem(r, 422, "trigger.conditions")
    assert await counts(wf) == before
    # 32 levels is allowed, and published with the instance.
    inst = await wf.start("budget-approval", context={**nest(32), "region": "EMEA"})
    paused = await wf.ok("POST", f"/v1/tasks/{inst['tasks'][0]['id']}/request-changes", APPROVER_ALL, {})
    before = await counts(wf)
    r = await wf.call("POST", f"/v1/instances/{inst['id']}/resubmit", MARKETER, {"context": nest(500)})
    problem(r, 422, "context")
    assert await counts(wf) == before
    assert (await wf.ok("GET", f"/v1/instances/{inst['id']}", MARKETER))["version"] == paused["version"]


# ------------------------------------------------------------------------- 4. report window

@pytest.mark.parametrize(("params", "field"), [
    ({"to": "9999-12-31"}, "query.to"),
    ({"from": "0001-01-01T00:00:00+01:00"}, "query.from"),
    ({"from": "9999-12-31T23:59:59-01:00"}, "query.from"),
    ({"from": "1899-12-31"}, "query.from"),
    ({"to": "3000-01-01T00:00:00"}, "query.to"),
])
async def test_a_report_window_outside_the_date_range_is_a_422(wf, params, field):
    problem(await wf.call("GET", "/v1/reports/sla", MOPS, params=params), 422, field)


async def test_a_report_window_at_the_edges_of_the_range_works(wf):
    report = await wf.ok("GET", "/v1/reports/sla", MOPS,
                         params={"from": "1900-01-01T00:00:00+14:00", "to": "2999-12-31"})
    assert report["count"] == 0 and report["to"] == "3000-01-01T00:00:00+00:00"
    report = await wf.ok("GET", "/v1/reports/sla", MOPS, params={"to": "2999-12-31T23:59:59-01:00"})
    assert report["count"] == 0 and report["to"] == "2999-12-31T23:59:59-01:00"


# ------------------------------------------------------------------------------ 5. versions

@pytest.mark.parametrize("version", [2**31, 9223372036854775808, 2**64, 10**30])
async def test_oversized_versions_are_a_422(wf, version):
    r = await wf.call("GET", "/v1/definitions/budget-approval", MOPS, params={"version": version})
    problem(r, 422, "query.version")
    before = await counts(wf)
    r = await wf.call("POST", "/v1/instances", MARKETER,
                      start_body("budget-approval", {"region": "EMEA"}, definition_version=version))
    problem(r, 422, "definition_version")
    assert await counts(wf) == before


async def test_the_largest_version_is_simply_not_found(wf):
    r = await wf.call("GET", "/v1/definitions/budget-approval", MOPS, params={"version": 2**31 - 1})
    assert r.status_code == 404
    r = await wf.call("POST", "/v1/instances", MARKETER,
                      start_body("budget-approval", {"region": "EMEA"}, definition_version=2**31 - 1))
    problem(r, 422, "definition_key")


# ------------------------------------------------------------------------- the inbox cursor

async def test_the_inbox_pages_past_tasks_without_an_sla(wf):
    """Tasks without an SLA sort last under a sentinel due time; its cursor must pass the bounds."""
    await wf.ok("POST", "/v1/definitions", ADMIN, {
        "key": "plain", "name": "plain", "stages": [{"name": "Review", "assignees": {"roles": ["approver"]}}],
    }, status=201)
    ids = {(await wf.start("plain", subject_id=f"c-{i}"))["tasks"][0]["id"] for i in range(3)}
    seen, cursor = set(), None
    for _ in range(3):
        page = await wf.ok("GET", "/v1/tasks", APPROVER_ALL, params={"limit": 1, **({"cursor": cursor} if cursor
                                                                                   else {})})
        seen |= {t["id"] for t in page["items"]}
        cursor = page["next_cursor"]
    assert seen == ids and cursor is None


async def test_a_user_longer_than_its_column_is_a_422(wf):
    """task_seats.value is VARCHAR(200): PostgreSQL refused a longer user only when an instance started."""
    before = await counts(wf)
    r = await wf.call("POST", "/v1/definitions", ADMIN, {
        "key": "long", "name": "long", "stages": [{"name": "A", "assignees": {"users": ["u" * 201]}}],
    })
    problem(r, 422, "stages.0.assignees.users.0")
    assert await counts(wf) == before
