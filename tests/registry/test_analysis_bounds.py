"""The graph analysis is bounded work: it reads within documented limits and computes off the event loop.

Found in the hardening review's class "heavy computation on the event loop": `/v1/analysis` read and
shaped every tool and integration and ran networkx on the event loop (580 ms at 2,000 tools and 6,000
integrations on the shared machine, growing with the stack), so `/health`, other requests and the
renewal timers waited. Now it reads only the columns it needs, a partition at a time, within limits
(a 422 beyond them), and computes in a worker thread stopped at a deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest
from sqlalchemy import insert

from services.registry.models import Integration, Tool
from shared.db import utcnow
from tests.harness import assert_problem
from tests.registry.conftest import client, make_settings, running

pytestmark = pytest.mark.db

TOOLS, EDGES = 20_000, 60_000


async def seed_stack(app, tools: int, edges: int) -> dict[str, set[str]]:
    """A large stack written straight into the registry's tables (the API would take minutes): tools in
    three lifecycles, a tenth without owners, integrations at random, a tenth planned. Returns what the
    analysis must find that is cheap to know: the orphans and the islands."""
    rng = random.Random(11)
    now = utcnow()
    ids = [str(uuid.uuid4()) for _ in range(tools)]
    lifecycle = ["active"] * 8 + ["pilot", "sunsetting"]
    tool_rows = [
        {
            "id": tid,
            "name": f"Tool {i:06d}",
            "vendor": f"Vendor {i % 97}",
            "category": "data",
            "capabilities": rng.sample(["crm", "email", "ads", "cdp", "bi", "cms", "chat", "seo"], 3),
            "owner_team": None if i % 10 == 0 else f"team{i % 12}",
            "owner_person": None if i % 10 == 0 else f"person{i}",
            "lifecycle": lifecycle[i % 10],
            "personal_data": False,
            "sso": True,
            "notes": f"tool number {i} of the big stack",
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for i, tid in enumerate(ids)
    ]
    edge_rows = []
    touched: set[str] = set()
    for k in range(edges):
        a, b = rng.sample(range(tools // 2), 2)  # the second half of the tools stays islands
        touched |= {ids[a], ids[b]}
        edge_rows.append(
            {
                "id": str(uuid.uuid4()),
                "from_tool_id": ids[a],
                "to_tool_id": ids[b],
                "data_objects": ["contacts", "leads"],
                "direction": "two_way" if k % 3 == 0 else "one_way",
                "method": "api",
                "status": "planned" if k % 10 == 0 else "active",
                "created_at": now,
            }
        )
    rt = app.state.runtime
    async with rt.transaction() as s:
        for start in range(0, tools, 5_000):
            await s.execute(insert(Tool.__table__), tool_rows[start : start + 5_000])
        for start in range(0, edges, 5_000):
            await s.execute(insert(Integration.__table__), edge_rows[start : start + 5_000])
    return {
        "orphans": {r["id"] for r in tool_rows if r["owner_team"] is None},
        "islands": set(ids) - touched,
    }


async def test_a_large_analysis_leaves_the_event_loop_free(app, api):
    expected = await seed_stack(app, TOOLS, EDGES)
    call = asyncio.create_task(api.get("/v1/analysis"))
    gaps: list[float] = []
    health: list[int] = []

    async def ticker() -> None:
        """What the event loop's other work sees: how late a 10 ms sleep wakes, and /health."""
        while not call.done():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            gaps.append(time.perf_counter() - before)
            health.append((await api.get("/health")).status_code)

    started = time.perf_counter()
    await asyncio.gather(call, ticker())
    took = time.perf_counter() - started
    r = call.result()
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body["orphans"]) == expected["orphans"]
    assert set(body["islands"]) == expected["islands"]
    assert body["single_points_of_failure"]  # a sparse random graph has many
    assert set(health) == {200} and len(gaps) > 5
    # On the event loop the whole request held it: 2.6 s to 5.2 s on the shared 2-core machine for this
    # stack; now the worst gap is a few hundred ms, what a loaded machine costs any sleep (1.08 s seen at a
    # load average of 17, so the bound is below the old behaviour's shortest hold, not at an idle machine's).
    assert max(gaps) < 2.0, f"the event loop was held for {max(gaps):.2f} s of the {took:.2f} s the analysis took"


@pytest.mark.parametrize(
    ("setting", "value", "words"),
    [
        ("graph_max_tools", 3, "more than 3 tools that are not retired"),
        ("graph_max_integrations", 2, "more than 2 integrations that are not retired"),
    ],
)
async def test_beyond_the_size_limits_the_graph_and_its_analysis_are_a_422(db_url, setting, value, words):
    settings = make_settings(db_url, "nats://127.0.0.1:1", nats_enabled=False, **{setting: value})
    async with running(settings) as application:
        await seed_stack(application, 10, 5)
        async with client(application) as c:
            for path in ("/v1/analysis", "/v1/graph", "/v1/graph?format=mermaid"):
                body = assert_problem(await c.get(path), 422)
                assert body["type"].endswith("/too-much-work") and words in body["detail"], (path, body)
                assert body["limit"] == value


async def test_beyond_its_deadline_the_analysis_is_a_422_and_counted(db_url):
    settings = make_settings(db_url, "nats://127.0.0.1:1", nats_enabled=False, analysis_seconds=0.000_001)
    async with running(settings) as application:
        await seed_stack(application, 200, 400)
        async with client(application) as c:
            body = assert_problem(await c.get("/v1/analysis"), 422)
            assert "longer than the limit" in body["detail"] and body["type"].endswith("/too-much-work")
            assert (await c.get("/v1/graph")).status_code == 200  # reading the graph has no deadline of its own
            metrics = (await c.get("/metrics")).text
    assert 'pitcrew_bounded_work_stopped_total{reason="limit",service="registry",what="analysis"}' in metrics
