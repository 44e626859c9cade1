"""CORS at the gateway: off by default; preflights answered before authentication; credentials only when asked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings
from tests.gateway.conftest import bearer, gateway_settings, running_gateway
from tests.harness import assert_problem

pytestmark = pytest.mark.db

APP = "https://app.example.com"
PREFLIGHT = {"Origin": APP, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


def cors_headers(r) -> dict[str, str]:
    return {k: v for k, v in r.headers.items() if k.lower().startswith("access-control-")}


async def test_a_preflight_from_an_allowed_origin_is_answered_without_a_token(new_db, net, token):
    settings = gateway_settings(await new_db("gateway"), cors_origins=[APP, "https://other.example.com"])
    async with running_gateway(settings) as gw:
        for path in ("/budget/v1/commitments", "/gateway/v1/api-keys", "/webhooks/erp", "/openapi.json"):
            r = await gw.options(path, headers=PREFLIGHT)
            assert r.status_code == 200, (path, r.text)
            h = cors_headers(r)
            assert h["access-control-allow-origin"] == APP, path
            assert "POST" in h["access-control-allow-methods"]
            assert "authorization" in h["access-control-allow-headers"].lower()
            assert "access-control-allow-credentials" not in h  # not configured: not allowed
        assert net.hits == {}  # answered at the gateway, no service saw it
        # A real request from the allowed origin carries the header (and what the client may read).
        r = await gw.get("/budget/v1/items", headers={**bearer(token("admin")), "Origin": APP})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP
        assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
        assert "origin" in r.headers["vary"].lower()
        # Refusals carry it too, so the browser app can read why.
        r = await gw.get("/budget/v1/items", headers={"Origin": APP})
        assert_problem(r, 401)
        assert r.headers["access-control-allow-origin"] == APP


async def test_a_disallowed_origin_gets_no_cors_headers(new_db, net, token):
    async with running_gateway(gateway_settings(await new_db("gateway"), cors_origins=[APP])) as gw:
        evil = {**PREFLIGHT, "Origin": "https://evil.example"}
        r = await gw.options("/budget/v1/commitments", headers=evil)
        assert_problem(r, 403)
        assert cors_headers(r) == {}
        r = await gw.get("/budget/v1/items", headers={**bearer(token("admin")), "Origin": "https://evil.example"})
        assert r.status_code == 200 and cors_headers(r) == {}
        # An allowed origin asking for a header that is not allowed: refused, not granted.
        r = await gw.options("/budget/v1/items", headers={**PREFLIGHT, "Access-Control-Request-Headers": "x-evil"})
        assert r.status_code == 400
        assert net.hits == {"budget.test": 1}


async def test_by_default_no_cors_header_is_ever_sent(gw, net, token):
    r = await gw.options("/budget/v1/commitments", headers=PREFLIGHT)
    assert_problem(r, 401)  # a plain OPTIONS through the proxy: authentication first
    assert cors_headers(r) == {}
    r = await gw.get("/budget/v1/items", headers={**bearer(token("admin")), "Origin": APP})
    assert r.status_code == 200 and cors_headers(r) == {}
    r = await gw.get("/openapi.json", headers={"Origin": APP})
    assert r.status_code == 200 and cors_headers(r) == {}


async def test_credentials_only_when_configured_and_never_with_any_origin(new_db, net):
    settings = gateway_settings(await new_db("gateway"), cors_origins=[APP], cors_allow_credentials=True)
    async with running_gateway(settings) as gw:
        r = await gw.options("/kpi/v1/metrics", headers=PREFLIGHT)
        assert r.status_code == 200 and r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-allow-origin"] == APP
    with pytest.raises(ValidationError, match="CORS"):
        Settings(cors_origins=["*"], cors_allow_credentials=True)


def test_origins_come_from_a_json_list_in_the_environment(monkeypatch):
    monkeypatch.setenv("PITCREW_GATEWAY_CORS_ORIGINS", f'["{APP}", "http://localhost:5173"]')
    assert Settings().cors_origins == [APP, "http://localhost:5173"]
    monkeypatch.delenv("PITCREW_GATEWAY_CORS_ORIGINS")
    assert Settings().cors_origins == []
