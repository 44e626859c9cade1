"""Renewal milestones: 120/90/60/30 days before the notice deadline by default, per contract when set,
each `registry.renewal.milestone` once: across a restart, and with two replicas on PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import Table, select, update

from shared.db import create_engine
from tests.conftest import eventually
from tests.harness import assert_problem, fields_of
from tests.registry.conftest import (
    ANALYST,
    FINANCE,
    client,
    days,
    make_contract,
    make_settings,
    make_tool,
    outbox_rows,
    published,
    running,
)


async def milestone_timers(app, contract_id: str) -> list[tuple[str, int, int]]:
    rt = app.state.runtime
    t = rt.infra.timers
    async with rt.transaction(readonly=True) as s:
        query = select(t).where(t.c.subject_id == contract_id, t.c.kind == "renewal_milestone")
        rows = (await s.execute(query.order_by(t.c.created_at))).all()
    return sorted((r.status, r.payload["term"], r.payload["days"]) for r in rows)


@pytest.mark.db
async def test_default_milestones_and_a_contracts_own(api, app):
    tool = await make_tool(api, "Acme")
    # notice deadline = today + 200: all four defaults ahead
    contract = await make_contract(api, tool["id"], start=days(-100), end=days(260), notice_days=60)
    url = f"/v1/contracts/{contract['id']}/milestones"
    body = (await api.get(url, headers=ANALYST)).json()
    assert body["days"] == [120, 90, 60, 30] and body["default"] and body["notice_deadline"] == days(200)
    assert [(i["days"], i["on"], i["status"], i["opens_review"]) for i in body["items"]] == [
        (120, days(80), "pending", False),
        (90, days(110), "pending", False),
        (60, days(140), "pending", False),
        (30, days(170), "pending", True),
    ]
    assert await milestone_timers(app, contract["id"]) == [("pending", 1, d) for d in (30, 60, 90, 120)]
    r = await api.put(url, json={"days": [250, 45, 14, 45]}, headers=FINANCE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["days"] == [250, 45, 14] and not body["default"]
    # 250 days before the deadline has passed already: not fired late
    assert [(i["days"], i["status"]) for i in body["items"]] == [(250, "passed"), (45, "pending"), (14, "pending")]
    assert [t for t in await milestone_timers(app, contract["id"]) if t[0] == "pending"] == [
        ("pending", 1, 14),
        ("pending", 1, 45),
    ]
    r = await api.put(url, json={"days": [-1, 4000]})
    assert fields_of(assert_problem(r, 422)) == {"days.0", "days.1"}
    assert_problem(await api.put(url, json={"days": [10]}, headers=ANALYST), 403)
    assert_problem(await api.put(url, json={}), 422, "days")
    assert (await api.put(url, json={"days": None})).json()["default"]
    assert_problem(await api.get("/v1/contracts/ghost/milestones"), 404)
    # Renewing plans the next term's milestones and cancels the old ones.
    assert (await api.post(f"/v1/contracts/{contract['id']}/renew")).status_code == 200
    timers = await milestone_timers(app, contract["id"])
    assert {t for t in timers if t[0] == "pending"} == {("pending", 2, d) for d in (30, 60, 90, 120)}
    assert (await api.post(f"/v1/contracts/{contract['id']}/cancel")).status_code == 200
    assert all(t[0] == "cancelled" for t in await milestone_timers(app, contract["id"]))
    assert_problem(await api.put(url, json={"days": [10]}), 409)


async def bring_forward(timers: Table, db_url: str, contract_ids: list[str], days: int, to: dt.datetime) -> int:
    """The moment of these contracts' pending `days` milestones arrives at `to`: their timers are moved
    there in the database (`test_default_milestones_and_a_contracts_own` checks the moments the schedule
    sets), so a slow machine setting the contracts up never races the clock. Works with the service
    stopped (its own engine)."""
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            query = select(timers.c.id, timers.c.subject_id, timers.c.payload).where(
                timers.c.kind == "renewal_milestone", timers.c.status == "pending"
            )
            ids = [
                r.id
                for r in (await conn.execute(query)).all()
                if r.subject_id in contract_ids and r.payload["days"] == days
            ]
            if ids:
                await conn.execute(update(timers).where(timers.c.id.in_(ids)).values(due_at=to))
        return len(ids)
    finally:
        await engine.dispose()


@pytest.mark.db
async def test_each_milestone_fires_once_across_a_restart(db_url, nats_url):
    """A milestone that came due while the service was down fires when it starts, once; another restart
    and a re-plan of the same days do not fire it again."""
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    settings = make_settings(db_url, nats_url, renewal_fire_time=due.time(), renewal_milestones=[30, 10])
    deadline = due.date() + dt.timedelta(days=30)  # the 30-day milestone falls on `due`
    end = deadline + dt.timedelta(days=60)
    async with running(settings) as first, client(first) as c:
        tool = await make_tool(c, "Acme CRM")
        contract = await make_contract(
            c, tool["id"], start=(end - dt.timedelta(days=364)).isoformat(), end=end.isoformat(), notice_days=60
        )
        timers = first.state.runtime.infra.timers
        assert await milestone_timers(first, contract["id"]) == [("pending", 1, 10), ("pending", 1, 30)]
    assert await published(nats_url, "registry.renewal.milestone", contract["id"], quiet=0.2) == []
    # The 30-day moment passes while the service is down.
    assert await bring_forward(timers, db_url, [contract["id"]], 30, dt.datetime.now(dt.UTC)) == 1
    async with running(settings) as second, client(second) as c:
        events = await eventually(lambda: published(nats_url, "registry.renewal.milestone", contract["id"]))
        await asyncio.sleep(1.0)
        url = f"/v1/contracts/{contract['id']}/milestones"
        # Setting the same days again re-plans the pending one and does not set the fired one again.
        assert (await c.put(url, json={"days": [30, 10]})).status_code == 200
        body = (await c.get(url)).json()
        assert [(i["days"], i["status"]) for i in body["items"]] == [(30, "fired"), (10, "pending")]
        assert body["items"][0]["fired_at"] is not None
    env = events[0]
    assert env.data["days_before"] == 30 and env.data["opens_review"] is True
    assert env.data["notice_deadline"] == deadline.isoformat() and env.data["milestone_on"] == due.date().isoformat()
    assert env.data["annual_cost"] == "12000.00" and env.data["owner"] == {"team": "mops", "person": "dana"}
    async with running(settings) as third:
        await asyncio.sleep(0.8)
        rows = await outbox_rows(third, "registry.renewal.milestone", contract["id"])
        assert [r["data"]["days_before"] for r in rows] == [30]
        assert await milestone_timers(third, contract["id"]) == [
            ("cancelled", 1, 10),
            ("fired", 1, 30),
            ("pending", 1, 10),
        ]
    assert len(await published(nats_url, "registry.renewal.milestone", contract["id"])) == 1


@pytest.mark.postgres_only
async def test_two_replicas_fire_each_milestone_once(db_url, nats_url):
    """Two apps on one PostgreSQL database, both polling: 40 milestones coming due at the same moment
    fire once each (SKIP LOCKED), and the later one of each contract stays pending in both."""
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    settings = make_settings(db_url, nats_url, renewal_fire_time=due.time(), renewal_milestones=[20, 5])
    deadline = due.date() + dt.timedelta(days=20)
    end = deadline + dt.timedelta(days=30)
    async with running(settings) as one, running(settings) as two, client(one) as c1, client(two) as c2:
        ids = []
        for n in range(40):
            c = (c1, c2)[n % 2]
            tool = await make_tool(c, f"Tool {n}")
            contract = await make_contract(
                c, tool["id"], start=(end - dt.timedelta(days=364)).isoformat(), end=end.isoformat(), notice_days=30
            )
            ids.append(contract["id"])
        timers = one.state.runtime.infra.timers
        # Both replicas are polling when the 20-day moment of all 40 arrives.
        assert await bring_forward(timers, db_url, ids, 20, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)) == 40

        async def all_fired() -> list:
            rows = [await milestone_timers(one, cid) for cid in ids]
            return rows if all(("fired", 1, 20) in r for r in rows) else []

        await eventually(all_fired, timeout=30)
        await asyncio.sleep(1.0)  # more polls of both schedulers
        for cid in ids:
            rows = await outbox_rows(one, "registry.renewal.milestone", cid)
            assert [r["data"]["days_before"] for r in rows] == [20], cid
            assert await milestone_timers(two, cid) == [("fired", 1, 20), ("pending", 1, 5)]
    fired = [e.data["contract_id"] for e in await published(nats_url, "registry.renewal.milestone")]
    assert sorted(cid for cid in fired if cid in ids) == sorted(ids)  # on NATS once each


@pytest.mark.db
async def test_the_review_opens_at_the_milestone_the_organisation_chooses(db_url, nats_url):
    """With `renewal_lead_days` 90 the review (`registry.renewal.due`, which starts the workflow's review
    with its SLA ending at the notice deadline) comes due at the 90-day milestone, which says so."""
    settings = make_settings(db_url, nats_url, renewal_lead_days=90)
    async with running(settings) as app, client(app) as c:
        tool = await make_tool(c, "Acme")
        contract = await make_contract(c, tool["id"], start=days(-100), end=days(260), notice_days=60)
        body = (await c.get(f"/v1/contracts/{contract['id']}/milestones")).json()
        opening = [i for i in body["items"] if i["opens_review"]]
        assert [i["days"] for i in opening] == [90]
        detail = (await c.get(f"/v1/contracts/{contract['id']}")).json()
        assert detail["renewal_due_at"] == opening[0]["due_at"]
        assert opening[0]["on"] == days(110)
