"""The renewal timer: `registry.renewal.due` once per contract term, also across a restart."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from tests.conftest import eventually
from tests.registry.conftest import (
    client,
    days,
    make_contract,
    make_settings,
    make_tool,
    outbox_rows,
    published,
    running,
)

pytestmark = pytest.mark.db

RENEWAL_DUE = {
    "contract_id",
    "tool_id",
    "tool_name",
    "term",
    "end",
    "notice_days",
    "notice_deadline",
    "auto_renew",
    "annual_cost",
    "currency",
    "owner",
    "utilization",
}


async def timer_rows(app, contract_id: str) -> list[tuple[str, int, dt.datetime]]:
    rt = app.state.runtime
    t = rt.infra.timers
    async with rt.transaction(readonly=True) as s:
        query = select(t).where(t.c.subject_id == contract_id, t.c.kind == "renewal_due").order_by(t.c.created_at)
        rows = (await s.execute(query)).all()
    return [(r.status, r.payload["term"], r.due_at) for r in rows]


async def test_fires_once_per_term_across_a_restart(db_url, nats_url):
    # Due 6 s from now (room for a loaded machine): notice deadline = end - 60 days, reminder 30 days
    # (the default lead) before it, at the configured time of day.
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).replace(microsecond=0)
    settings = make_settings(db_url, nats_url, renewal_fire_time=due.time())
    end = due.date() + dt.timedelta(days=30 + 60)
    async with running(settings) as first, client(first) as c:
        tool = await make_tool(c, "Acme CRM")
        contract = await make_contract(
            c, tool["id"], start=(end - dt.timedelta(days=364)).isoformat(), end=end.isoformat(), notice_days=60
        )
        assert (await c.get(f"/v1/contracts/{contract['id']}")).json()["renewal_due_at"] == due.isoformat()
        assert await timer_rows(first, contract["id"]) == [("pending", 1, due)]
    # The first app stopped before the due time: nothing fired.
    assert dt.datetime.now(dt.UTC) < due
    await asyncio.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()) + 0.3)

    async with running(settings) as second:
        events = await eventually(lambda: published(nats_url, "registry.renewal.due", contract["id"]))
        await asyncio.sleep(1.0)  # several scheduler polls later it is still once
        assert [e.data["term"] for e in await published(nats_url, "registry.renewal.due", contract["id"])] == [1]
        assert await timer_rows(second, contract["id"]) == [("fired", 1, due)]
    env = events[0]
    assert RENEWAL_DUE <= set(env.data)
    assert env.data["notice_deadline"] == (end - dt.timedelta(days=60)).isoformat()
    assert env.data["end"] == end.isoformat() and env.data["tool_name"] == "Acme CRM"
    assert env.data["owner"] == {"team": "mops", "person": "dana"} and env.data["annual_cost"] == "12000.00"

    # A third start does not fire it again; renewing schedules the next term's reminder.
    async with running(settings) as third, client(third) as c:
        await asyncio.sleep(0.8)
        assert len(await outbox_rows(third, "registry.renewal.due", contract["id"])) == 1
        r = await c.post(f"/v1/contracts/{contract['id']}/renew")
        assert r.status_code == 200 and r.json()["term"] == 2
        statuses = [(status, term) for status, term, _ in await timer_rows(third, contract["id"])]
        assert statuses == [("fired", 1), ("pending", 2)]


async def test_a_reminder_already_due_at_creation_fires_at_once_with_utilization(api, app, nats_url):
    tool = await make_tool(api, "Late Tool")
    r = await api.post(
        "/v1/utilization", json={"tool_id": tool["id"], "date": days(-2), "active_users": 20, "source": "sso"}
    )
    assert r.status_code == 201, r.text
    contract = await make_contract(api, tool["id"], start=days(-300), end=days(40), notice_days=30, seats=50)
    events = await eventually(lambda: published(nats_url, "registry.renewal.due", contract["id"]))
    assert len(events) == 1
    assert events[0].data["utilization"] == 0.4 and events[0].data["notice_deadline"] == days(10)


async def test_renewing_or_cancelling_cancels_the_pending_reminder_of_the_old_term(api, app):
    tool = await make_tool(api, "Tool")
    contract = await make_contract(api, tool["id"], start=days(0), end=days(400), notice_days=30)
    cid = contract["id"]
    assert [(s, t) for s, t, _ in await timer_rows(app, cid)] == [("pending", 1)]
    assert (await api.post(f"/v1/contracts/{cid}/renew")).status_code == 200
    rows = await timer_rows(app, cid)
    assert [(s, t) for s, t, _ in rows] == [("cancelled", 1), ("pending", 2)]
    assert rows[1][2].date() == dt.date.fromisoformat(days(401 + 400 - 30 - 30))
    assert (await api.post(f"/v1/contracts/{cid}/cancel")).status_code == 200
    assert [(s, t) for s, t, _ in await timer_rows(app, cid)] == [("cancelled", 1), ("cancelled", 2)]
    assert await outbox_rows(app, "registry.renewal.due", cid) == []


async def test_renewal_calendar_lists_notice_deadlines_in_the_window_with_utilization(api):
    soon = await make_tool(api, "Soon")
    later = await make_tool(api, "Later")
    await api.post(
        "/v1/utilization",
        json={"tool_id": soon["id"], "date": days(0), "active_users": 0, "seats_purchased": 10, "source": "scim"},
    )
    c1 = await make_contract(api, soon["id"], start=days(-300), end=days(80), notice_days=60)
    await make_contract(api, later["id"], start=days(-100), end=days(300), notice_days=30)
    past = await make_contract(api, later["id"], start=days(-300), end=days(5), notice_days=30)
    items = (await api.get("/v1/renewals", params={"within_days": 90})).json()["items"]
    assert [(i["contract_id"], i["notice_deadline"], i["days_left"]) for i in items] == [(c1["id"], days(20), 20)]
    assert items[0]["utilization"] == 0.0 and items[0]["shelfware"] and items[0]["underused"]
    wide = (await api.get("/v1/renewals", params={"within_days": 365})).json()["items"]
    assert len(wide) == 2 and past["id"] not in {i["contract_id"] for i in wide}
    assert (await api.get("/v1/renewals", params={"within_days": -1})).status_code == 422
