"""Dead letters are visible, replayable once after a fix, and discardable with a note, per service.

Before: a refused event lived only in a NATS stream (dlq.<service>), where no operator saw it.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, insert, select

from shared.errors import Invalid
from shared.events import STREAMS
from tests.conftest import eventually
from tests.harness import assert_problem, identity
from tests.shared.sample import create_schema, effects, make_app
from tests.shared.test_events import runtime, stop
from tests.shared.test_http import client

pytestmark = pytest.mark.db

ADMIN = identity("root", "admin")


@pytest.fixture()
def prefix() -> str:
    p = "d" + uuid.uuid4().hex[:10]
    STREAMS[p.upper()] = [f"{p}.>"]
    return p


async def test_dead_letters_listed_replayed_once_after_a_fix_and_discarded(new_db, nats_server, prefix):
    fixed = {"now": False}

    def handlers(rt):
        async def handle(uow, env):
            if env.data["name"].startswith("poison") and not fixed["now"]:
                raise Invalid.on("data.name", f"{env.data['name']} is not a name this service knows")
            await uow.execute(insert(effects).values(event_id=env.id, name=env.data["name"]))

        return {f"{prefix}.thing.created": handle}

    app = make_app(await new_db("dlq"), nats_server.url, handlers=handlers)
    await create_schema(app.state.runtime)
    producer = await runtime(f"{prefix}p", await new_db("dlqp"), nats_server.url)
    producer.relay.start()
    try:
        async with app.router.lifespan_context(app), client(app) as c:
            async with producer.transaction() as s:
                for name in ("fine", "poison-1", "poison-2", "poison-3"):
                    await producer.outbox.add(s, f"{prefix}.thing.created", name, {"name": name})

            async def listed() -> list:
                return (await c.get("/v1/dead-letters", headers=ADMIN)).json()["items"]

            dead = await eventually(lambda: _at_least(listed(), 3), timeout=30)
            assert {d["envelope"]["data"]["name"] for d in dead} == {"poison-1", "poison-2", "poison-3"}
            assert all(d["status"] == "open" and "not a name this service knows" in d["reason"] for d in dead)
            assert_problem(await c.get("/v1/dead-letters", headers=identity("ann", "analyst")), 403)
            metrics = (await c.get("/metrics", headers=ADMIN)).text
            assert f'pitcrew_dead_letters_total{{service="sample",subject="{prefix}.thing.created"}} 3.0' in metrics
            by_name = {d["envelope"]["data"]["name"]: d for d in dead}

            # Replayed before the fix: it fails again, stays open, and says why.
            r = await c.post(f"/v1/dead-letters/{by_name['poison-1']['id']}/replay", headers=ADMIN)
            assert r.status_code == 200 and r.json()["outcome"] == "failed", r.text
            one = (await c.get(f"/v1/dead-letters/{by_name['poison-1']['id']}", headers=ADMIN)).json()
            assert one["status"] == "open" and one["attempts"] > by_name["poison-1"]["attempts"]

            fixed["now"] = True
            r = await c.post(f"/v1/dead-letters/{by_name['poison-1']['id']}/replay", headers=ADMIN)
            assert r.json() == {**r.json(), "status": "replayed", "outcome": "applied"}
            again = await c.post(f"/v1/dead-letters/{by_name['poison-1']['id']}/replay", headers=ADMIN)
            assert again.json()["outcome"] == "already_applied"

            discarded = await c.post(
                f"/v1/dead-letters/{by_name['poison-3']['id']}/discard",
                json={"note": "sent by a test tool"},
                headers=ADMIN,
            )
            assert discarded.json()["status"] == "discarded"
            assert_problem(await c.post(f"/v1/dead-letters/{by_name['poison-3']['id']}/replay", headers=ADMIN), 409)

            ranged = await c.post("/v1/dead-letters/replay", json={"subject": f"{prefix}.thing.created"}, headers=ADMIN)
            assert [o["outcome"] for o in ranged.json()["items"]] == ["applied"]  # poison-2; poison-3 was discarded
            assert (await c.get("/v1/dead-letters", headers=ADMIN)).json()["items"] == []
            names = await _effects(app)
            assert sorted(names) == ["fine", "poison-1", "poison-2"]  # each once
    finally:
        await stop(producer)


async def _at_least(items_coro, n: int):
    items = await items_coro
    return items if len(items) >= n else None


async def _effects(app) -> list[str]:
    async with app.state.runtime.transaction(readonly=True) as s:
        assert await s.scalar(select(func.count()).select_from(effects)) == len(
            set((await s.execute(select(effects.c.event_id))).scalars())
        )
        return list((await s.execute(select(effects.c.name))).scalars())
