"""Internal teams: a registry of teams (members, business calendar), and a team's deliverable due on
the team's calendar (its holidays and DST), falling back to the definition's when the team has none."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.workflow.conftest import ANALYST, MARKETER, MOPS, who
from tests.workflow.test_deliverables import a_request, at, berlin

pytestmark = pytest.mark.db

SUPPLIER = who("acme-key", "supplier", scopes=("supplier:s-1",))


async def design_team(wf) -> dict:
    await berlin(wf)  # Europe/Berlin, weekdays 09:00-17:00, German public holidays
    return await wf.ok(
        "POST", "/v1/teams", MOPS, {"name": "design", "members": ["olga", "otto"], "calendar": "berlin"}, status=201
    )


async def test_teams_are_registered_by_mops_and_read_by_staff(wf):
    team = await design_team(wf)
    assert team["members"] == ["olga", "otto"] and team["calendar"] == "berlin" and team["created_by"] == MOPS.subject
    ops = await wf.ok("POST", "/v1/teams", MOPS, {"name": "ops"}, status=201)
    assert ops["calendar"] is None and ops["members"] == []
    assert (await wf.call("POST", "/v1/teams", MARKETER, {"name": "mine"})).status_code == 403
    assert (await wf.call("POST", "/v1/teams", MOPS, {"name": "design"})).status_code == 409
    for body, field in (
        ({"name": "x", "calendar": "nowhere"}, "calendar"),
        ({"name": "x", "members": ["a", "a"]}, "members"),
        ({"name": "x", "members": [""]}, "members.0"),
        ({"name": "a/b"}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ):
        r = await wf.call("POST", "/v1/teams", MOPS, body)
        assert r.status_code == 422 and field in {e["field"] for e in r.json()["errors"]}, r.text
    assert [t["name"] for t in (await wf.ok("GET", "/v1/teams", ANALYST))["items"]] == ["design", "ops"]
    first = await wf.ok("GET", "/v1/teams", ANALYST, params={"limit": 1})
    rest = await wf.ok("GET", "/v1/teams", ANALYST, params={"limit": 1, "cursor": first["next_cursor"]})
    assert [t["name"] for t in first["items"] + rest["items"]] == ["design", "ops"] and rest["next_cursor"] is None
    assert (await wf.ok("GET", "/v1/teams/design", MARKETER))["calendar"] == "berlin"
    assert (await wf.call("GET", "/v1/teams/nobody", MARKETER)).status_code == 404
    assert (await wf.call("GET", "/v1/teams", SUPPLIER)).status_code == 403


async def test_a_teams_deliverable_is_due_on_the_teams_calendar(wf):
    await design_team(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    hero = await wf.ok(
        "POST",
        path,
        MARKETER,
        {"name": "Hero", "team": "design", "owner": "olga", "due_date": "2027-10-29"},
        status=201,
    )
    assert hero["calendar"] == "berlin" and hero["sla_kind"] == "ola"
    assert at(hero["due_at"]) == dt.datetime(2027, 10, 29, 15, tzinfo=dt.UTC)  # 17:00 CEST, not 17:00 UTC
    banner = await wf.ok(
        "POST", path, MARKETER, {"name": "Banner", "team": "design", "owner": "otto", "due_date": "2027-11-01"}, 201
    )
    assert at(banner["due_at"]) == dt.datetime(2027, 11, 1, 16, tzinfo=dt.UTC)  # 17:00 CET, after the change
    # Ascension Day is a German holiday: closed on the team's calendar, a working day on the definition's.
    body = {"name": "Flyer", "team": "design", "owner": "olga", "due_date": "2027-05-06"}
    r = await wf.call("POST", path, MARKETER, body)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "due_date", r.text
    assert "berlin" in r.json()["errors"][0]["message"]
    # An explicit calendar still wins over the team's.
    given = await wf.ok("POST", path, MARKETER, {**body, "calendar": "default"}, status=201)
    assert given["calendar"] == "default" and at(given["due_at"]) == dt.datetime(2027, 5, 6, 17, tzinfo=dt.UTC)
    # A team that lists members takes its owner from among them.
    r = await wf.call("POST", path, MARKETER, {**body, "owner": "mallory", "due_date": "2027-05-07"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "owner", r.text


async def test_business_hours_run_on_the_teams_calendar_across_a_holiday(wf, monkeypatch):
    await design_team(wf)
    req = await a_request(wf)
    path = f"/v1/requests/{req['id']}/deliverables"
    # Friday 14 May 2027, 15:00 CEST. By hand on the team's calendar: Friday 15:00-17:00 (2 h), Whit Monday
    # the 17th closed, Tuesday 09:00-15:00 CEST (6 h) -> due Tuesday 18 May, 15:00 CEST = 13:00 UTC.
    created = dt.datetime(2027, 5, 14, 13, tzinfo=dt.UTC)
    monkeypatch.setattr("services.workflow.deliverables.utcnow", lambda: created)
    d = await wf.ok(
        "POST", path, MARKETER, {"name": "Copy", "team": "design", "owner": "olga", "business_hours": "8"}, status=201
    )
    assert d["calendar"] == "berlin" and at(d["due_at"]) == dt.datetime(2027, 5, 18, 13, tzinfo=dt.UTC)
    # Warning at 0.75 = 6 h: Friday's 2 h, then 4 h of Tuesday -> 13:00 CEST = 11:00 UTC.
    assert at(d["warn_at"]) == dt.datetime(2027, 5, 18, 11, tzinfo=dt.UTC)
    # The same on the definition's calendar (UTC 09:00-17:00, no holidays): Friday 13-17 UTC (4 h), Monday
    # 09-13 UTC (4 h) -> due Monday 17 May, 13:00 UTC.
    await wf.ok("POST", "/v1/teams", MOPS, {"name": "ops", "members": ["olga"]}, status=201)  # no calendar
    for team in ("ops", "never-registered"):
        body = {"name": "Copy", "team": team, "owner": "olga", "business_hours": "8"}
        plain = await wf.ok("POST", path, MARKETER, body, status=201)
        assert plain["calendar"] == "default" and at(plain["due_at"]) == dt.datetime(2027, 5, 17, 13, tzinfo=dt.UTC)
