"""The fast lane (shared/fastlane.py) answers plain JSON POSTs exactly as FastAPI would."""

from __future__ import annotations

import json

import httpx
import pytest

from pitcrew.migrations import upgrade_async
from services.budget import api, api_integrations, api_ledger
from services.budget.main import create_app
from services.budget.settings import Settings
from shared.fastlane import lane_for
from tests.budget.conftest import ADMIN, Budget, who

pytestmark = pytest.mark.db
ROUTES = [r for m in (api, api_ledger, api_integrations) for r in m.router.routes]


def test_which_routes_take_the_lane():
    laned = {r.path for r in ROUTES if lane_for(r)}
    assert {"/v1/commitments", "/v1/actuals", "/v1/allocations", "/v1/transfers"} <= laned
    assert "/v1/commitments/{commitment_id}/approve" not in laned  # a path parameter
    assert "/v1/fx-rates" in laned and "/v1/plans/{plan_id}/import" not in laned  # text/csv, path parameter
    gets = [r for r in ROUTES if "GET" in r.methods]
    assert gets and not any(lane_for(r) for r in gets)


def _route(app, path: str):
    return next(r for r in ROUTES if r.path == path and "POST" in r.methods)


async def _answers(budget: Budget, line_id: str, plan_id: str) -> list[tuple[int, dict, str | None]]:
    """The same requests, good and bad, with what varies from app to app (ids, times) left out."""
    good = {"line_id": line_id, "period": "2027-03", "amount": "10.00", "currency": "EUR"}
    requests = [
        dict(json=good),
        dict(json={**good, "amount": "ten"}),
        dict(json={**good, "surprise": 1}),
        dict(json={k: v for k, v in good.items() if k != "currency"}),
        dict(content=b'{"line_id": ', headers={**ADMIN, "content-type": "application/json"}),
        dict(content=b"amount=1", headers={**ADMIN, "content-type": "application/x-www-form-urlencoded"}),
        dict(json=good, headers={}),  # no identity
        dict(json=good, headers=who("analyst")),  # may not spend
        dict(json={**good, "line_id": "no-such-line"}),  # the domain refuses
        dict(json={**good, "amount": "1000000.00"}),  # more than is available: 409 with the shortfall
        dict(json=good, headers={**ADMIN, "Idempotency-Key": "k-1"}),
        dict(json=good, headers={**ADMIN, "Idempotency-Key": "k-1"}),  # the replay
    ]
    out = []
    for req in requests:
        headers = req.pop("headers", ADMIN)
        r = await budget.c.post("/v1/commitments", headers=headers, **req)
        body = json.loads(r.text.replace(line_id, "<line>").replace(plan_id, "<plan>"))
        for volatile in ("id", "entry_id", "created_at", "request_id", "updated_at"):
            body.pop(volatile, None)
        out.append((r.status_code, body, r.headers.get("idempotent-replayed")))
    return out


async def _budget(new_db, fast_lane: bool):
    url = await new_db("budget")
    await upgrade_async("budget", url)
    app = create_app(Settings(database_url=url, nats_enabled=False, fast_lane=fast_lane))
    return app


async def _run(app, check):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://budget") as client:
            budget = Budget(app, client)
            plan = await budget.plan()
            line = await budget.line(plan["id"], "L", region="EMEA")
            await budget.allocate(line["id"], "100.00")
            return await check(budget, line["id"], plan["id"])


async def test_the_lane_answers_every_request_as_fastapi_does(new_db):
    with_lane = await _run(await _budget(new_db, True), _answers)
    without = await _run(await _budget(new_db, False), _answers)
    assert [a[0] for a in with_lane] == [201, 422, 422, 422, 422, 422, 401, 403, 422, 409, 201, 201]
    assert with_lane == without
    assert with_lane[-1][2] == "true" and with_lane[0][1]["status"] == "committed"


async def test_the_lane_takes_what_it_can_and_hands_fastapi_the_rest(new_db, monkeypatch):
    """With FastAPI's own handling of the route broken, a plain request still succeeds (the lane took
    it) and a bad one reaches the breakage (the lane handed it on, body and all)."""
    app = await _budget(new_db, True)
    route = _route(app, "/v1/commitments")
    seen: list[bytes] = []

    async def broken(scope, receive, send):
        seen.append((await receive())["body"])
        raise RuntimeError("FastAPI's route was called")

    monkeypatch.setattr(route, "handle", broken)

    async def check(budget: Budget, line_id: str, _plan_id: str):
        good = {"line_id": line_id, "period": "2027-03", "amount": "10.00", "currency": "EUR"}
        assert (await budget.c.post("/v1/commitments", headers=ADMIN, json=good)).status_code == 201
        assert seen == []
        r = await budget.c.post("/v1/commitments", headers=ADMIN, json={**good, "amount": "ten"})
        assert r.status_code == 500 and b'"amount":"ten"' in seen[0]
        app.dependency_overrides[object] = object  # overrides switch the lane off
        assert (await budget.c.post("/v1/commitments", headers=ADMIN, json=good)).status_code == 500
        app.dependency_overrides.clear()
        text = (await budget.c.get("/metrics", headers=ADMIN)).text
        assert 'method="POST",route="/v1/commitments",service="budget",status="201"' in text

    await _run(app, check)
