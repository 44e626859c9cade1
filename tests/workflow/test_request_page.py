"""A request's page of truth (fields, approvals, deliverables, comments, history) and comments
with @mentions."""

from __future__ import annotations

import pytest

from tests.workflow.conftest import ANALYST, APPROVER_US, MARKETER
from tests.workflow.test_deliverables import a_request

pytestmark = pytest.mark.db


async def test_comments_mention_users_and_the_page_shows_everything(wf):
    req = await a_request(wf)
    path = f"/v1/requests/{req['number']}/comments"
    c = await wf.ok("POST", path, MARKETER, {"body": "@olga can you take this? cc @emil, @olga."}, status=201)
    assert c["mentions"] == ["olga", "emil"] and c["author"] == MARKETER.subject and c["deliverable_id"] is None
    assert (await wf.ok("POST", path, MARKETER, {"body": "mail me at mia@example.com"}, status=201))["mentions"] == []
    r = await wf.call("POST", path, MARKETER, {"body": ""})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body", r.text
    assert (await wf.call("POST", path, APPROVER_US, {"body": "hi"})).status_code == 404  # out of scope
    assert (await wf.call("POST", path, ANALYST, {"body": "hi"})).status_code == 403
    event = (await wf.events("workflow.request.commented"))[0]["data"]
    assert event["mentions"] == ["olga", "emil"] and event["number"] == req["number"]
    assert len(await wf.events("workflow.request.commented")) == 2
    d = await wf.ok(
        "POST",
        f"/v1/requests/{req['id']}/deliverables",
        MARKETER,
        {"name": "Hero", "owner": "olga", "business_hours": "8"},
        status=201,
    )
    page = await wf.ok("GET", f"/v1/requests/{req['number']}", MARKETER)
    assert page["data"] == req["data"] and page["number"] == req["number"]
    assert [x["id"] for x in page["deliverables"]] == [d["id"]]
    assert [x["body"][:5] for x in page["comments"]] == ["@olga", "mail "]
    assert page["approvals"] and page["approvals"][0]["status"] == "open"
    actions = [h["action"] for h in page["history"]]
    assert actions.count("commented") == 2 and "deliverable_created" in actions and actions[0] == "started"
