"""The audit trail: every change with who, when, which request, before and after; admins read and export it."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import insert

from shared.context import Actor, actor_var
from tests.harness import assert_problem, identity
from tests.shared.sample import create_schema, make_app, things
from tests.shared.test_http import client

pytestmark = pytest.mark.db

ADMIN = identity("root", "admin")


@pytest.fixture()
async def app(new_db):
    application = make_app(await new_db("audit"), "nats://127.0.0.1:1")
    application.state.runtime.bus.enabled = False
    await create_schema(application.state.runtime)
    async with application.router.lifespan_context(application):
        yield application


async def test_each_change_is_recorded_with_its_author_request_and_before_and_after(app):
    rt = app.state.runtime
    async with client(app) as c:
        r = await c.post(
            "/v1/things",
            json={"name": "kettle", "amount": "1.50"},
            headers={**identity("dana", "marketer"), "X-Request-ID": "req-42"},
        )
        assert r.status_code == 201, r.text
        thing = str(r.json()["id"])
        # A change made by a use case that publishes no event, saying what it was and what it became.
        token = actor_var.set(Actor("service:sample", "service", "ev-1", "EVENT", "other.thing.renamed"))
        try:
            async with rt.unit_of_work() as uow:
                await uow.execute(insert(things).values(name="teapot"))
                await uow.audit(
                    "thing", thing, action="sample.thing.renamed", before={"name": "kettle"}, after={"name": "teapot"}
                )
            # A third change by event: its `before` is the entity's previous `after`.
            async with rt.unit_of_work() as uow:
                await rt.outbox.add(uow, "sample.thing.created", thing, {"name": "pot", "amount": "2.00"})
        finally:
            actor_var.reset(token)

        trail = await c.get("/v1/audit", params={"entity": "thing", "entity_id": thing}, headers=ADMIN)
        assert trail.status_code == 200, trail.text
        items = trail.json()["items"]
        assert [i["action"] for i in items] == ["sample.thing.created", "sample.thing.renamed", "sample.thing.created"]
        third, second, first = items
        assert (first["actor"], first["actor_kind"], first["method"], first["path"], first["request_id"]) == (
            "dana",
            "user",
            "POST",
            "/v1/things",
            "req-42",
        )
        assert first["service"] == "sample" and first["before"] is None
        assert first["after"] == {"name": "kettle", "amount": "1.50"}
        assert (second["actor"], second["request_id"], second["method"]) == ("service:sample", "ev-1", "EVENT")
        assert (second["before"], second["after"]) == ({"name": "kettle"}, {"name": "teapot"})
        assert third["before"] == {"name": "teapot"} and third["after"] == {"name": "pot", "amount": "2.00"}

        # Filters, pages, the CSV export, and admins only.
        by_dana = (await c.get("/v1/audit", params={"actor": "dana"}, headers=ADMIN)).json()["items"]
        assert [i["seq"] for i in by_dana] == [first["seq"]]
        renamed = (await c.get("/v1/audit", params={"action": "sample.thing.ren"}, headers=ADMIN)).json()["items"]
        assert [i["seq"] for i in renamed] == [second["seq"]]
        page1 = (await c.get("/v1/audit", params={"limit": 2}, headers=ADMIN)).json()
        page2 = (await c.get("/v1/audit", params={"limit": 2, "cursor": page1["next_cursor"]}, headers=ADMIN)).json()
        assert [i["seq"] for i in page1["items"] + page2["items"]] == [third["seq"], second["seq"], first["seq"]]
        assert page2["next_cursor"] is None
        exported = await c.get("/v1/audit", params={"format": "csv"}, headers=ADMIN)
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["action"] for r in rows] == [third["action"], second["action"], first["action"]]
        assert rows[2]["actor"] == "dana" and rows[1]["before"] == '{"name":"kettle"}'
        assert_problem(await c.get("/v1/audit", headers=identity("ann", "analyst")), 403)
        assert_problem(await c.get("/v1/audit", params={"cursor": "nonsense"}, headers=ADMIN), 422)
