"""A page section whose API call the person's roles may not make is left out (as the menu leaves out
pages), never shown as a "Forbidden" box; a role that may read it sees it.

The console runs in this process; the API it calls is a small fake gateway on a real port that
answers the KPI, stack and approvals pages' calls and refuses the data-quality report as the KPI
service does (403 unless mops, analyst or admin), recording every path asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pitcrew.launcher import free_port
from tests.console.conftest import sign_in
from tests.gateway.network import _Server

QUALITY_READERS = {"mops", "analyst", "admin"}  # services/kpi/api.py quality_readers
ANSWERS: dict[str, Any] = {
    "/kpi/v1/metrics": {"items": [{"key": "spend", "name": "Spend"}], "next_cursor": None},
    "/kpi/v1/scorecard": {"items": []},
    "/kpi/v1/metrics/spend/series": {"unit": "currency", "series": []},
    "/kpi/v1/metrics/spend": {
        "key": "spend",
        "name": "Spend",
        "version": 1,
        "unit": "currency",
        "direction": "lower_is_better",
        "owner": "mops",
        "description": "Money spent.",
    },
    "/kpi/v1/attribution": {"credits": [], "conversions": 0, "total": "0"},
    "/kpi/v1/quality": {
        "since": "2026-11-27T00:00:00Z",
        "rejected": {"count": 3, "items": []},
        "duplicates_dropped": {"count": 0, "batches": []},
        "late_arrivals": {"count": 0, "batches": []},
        "new_dimension_values": [],
        "new_measurement_types": [],
    },
}


@contextlib.asynccontextmanager
async def fake_gateway(
    answers: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[str, list[tuple[frozenset[str], str]]]]:
    """The fake gateway on a real port; `answers` replaces some of its answers (path -> JSON)."""
    asked: list[tuple[frozenset[str], str]] = []
    known = {**ANSWERS, **(answers or {})}

    async def answer(request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        roles = frozenset(jwt.decode(token, options={"verify_signature": False}).get("roles", []))
        path = request.url.path
        asked.append((roles, path))
        if path == "/kpi/v1/quality" and not roles & QUALITY_READERS:
            detail = "This action needs one of the roles: admin, analyst, mops."
            return JSONResponse({"title": "Forbidden", "status": 403, "detail": detail}, status_code=403)
        if path in known:
            body = known[path]
            status = body.get("status", 200) if isinstance(body.get("status"), int) else 200
            return JSONResponse(body, status_code=status)  # a body with a "status" is a problem
        return JSONResponse({"title": "Not Found", "status": 404, "detail": path}, status_code=404)

    port = free_port()
    app = Starlette(routes=[Route("/{path:path}", answer)])
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", asked
    finally:
        server.should_exit = True
        await task


def sections(html: str) -> list[str]:
    return re.findall(r'<section aria-labelledby="([^"]+)"', html)


@pytest.mark.parametrize(
    ("roles", "sees_quality"),
    [
        (("finance",), False),
        (("approver",), False),
        (("marketer",), False),
        (("partner",), False),
        (("analyst",), True),
        (("mops",), True),
        (("admin",), True),
        (("finance", "analyst"), True),
    ],
)
async def test_the_kpi_page_leaves_out_the_quality_section_a_role_may_not_read(console, roles, sees_quality):
    async with fake_gateway() as (url, asked), console(gateway_url=url) as client:
        await sign_in(client, user="fay", roles=roles)
        r = await client.get("/kpis")
        assert r.status_code == 200, r.text
        assert "Forbidden" not in r.text and "flash-error" not in r.text
        expected = ["score", "chart-title", "attr"] + (["quality"] if sees_quality else [])
        assert sections(r.text) == expected
        assert ("Data quality" in r.text) is sees_quality
        if sees_quality:
            assert 'data-figure="rejected" data-value="3"' in r.text
        # Hidden, not merely masked: the call the role may not make is never made.
        assert any(p == "/kpi/v1/scorecard" for _, p in asked)
        assert any(p == "/kpi/v1/quality" for _, p in asked) is sees_quality


async def test_a_section_the_api_refuses_anyway_still_shows_the_refusal(console):
    """Hiding follows the policy; when the API refuses something the policy allows, the section says so."""
    no_attribution = {"/kpi/v1/attribution": {"title": "Not Found", "status": 404}}
    async with fake_gateway(no_attribution) as (url, _), console(gateway_url=url) as client:
        await sign_in(client, user="fay", roles=("mops",))
        r = await client.get("/kpis")
        assert r.status_code == 200 and "attr" in sections(r.text)
        assert "flash-error" in r.text and "This part is unavailable or refused" in r.text
