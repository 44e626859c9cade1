"""The export is bounded work: PyYAML's representer (about 1.5 ms a tool) runs in a worker thread,
within documented limits (a 422 beyond them), so a large export does not hold the event loop."""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml

from tests.harness import assert_problem
from tests.registry.conftest import client, make_settings, make_tool, running
from tests.registry.test_analysis_bounds import seed_stack

pytestmark = pytest.mark.db


async def test_a_large_export_leaves_the_event_loop_free(app, api):
    await seed_stack(app, 5_000, 2_000)
    call = asyncio.create_task(api.get("/v1/export"))
    gaps: list[float] = []
    while not call.done():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        gaps.append(time.perf_counter() - before)
    r = await call
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    docs = list(yaml.safe_load_all(r.text))
    assert len(docs) == 5_000 and docs[0]["metadata"]["name"] == "Tool 000000"
    assert sum(len(d["spec"]["integrations"]) for d in docs) == 2_000
    # Written on the event loop, this export held it for about 4 s on the shared 2-core machine.
    assert max(gaps) < 1.0, f"the event loop was held for {max(gaps):.2f} s by the export"


@pytest.mark.parametrize("format", ["yaml", "csv"])
async def test_an_export_beyond_its_limits_is_a_422(db_url, format):
    settings = make_settings(db_url, "nats://127.0.0.1:1", nats_enabled=False, export_max_tools=2)
    async with running(settings) as application, client(application) as c:
        for name in ("A", "B"):
            await make_tool(c, name)
        assert (await c.get("/v1/export", params={"format": format})).status_code == 200
        await make_tool(c, "C")
        body = assert_problem(await c.get("/v1/export", params={"format": format}), 422)
        assert body["type"].endswith("/too-much-work") and "more than 2 tools" in body["detail"]


async def test_an_export_past_its_deadline_is_a_422(db_url):
    settings = make_settings(db_url, "nats://127.0.0.1:1", nats_enabled=False, export_seconds=0.000_001)
    async with running(settings) as application, client(application) as c:
        await make_tool(c, "A")
        body = assert_problem(await c.get("/v1/export"), 422)
        assert "longer than the limit" in body["detail"]
