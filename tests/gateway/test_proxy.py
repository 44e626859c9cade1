"""Routing, identity propagation, headers, failures, balancing, metrics, health and OpenAPI."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from shared.identity import HEADER, Principal, mint, verify
from shared.settings import DEV_IDENTITY_SECRET
from tests.gateway.conftest import assert_problem, bearer, gateway_settings, running_gateway

pytestmark = pytest.mark.db


async def test_forwards_path_query_body_and_a_fresh_identity(gw, token, upstreams):
    forged = mint(Principal("mallory", frozenset({"admin"})), DEV_IDENTITY_SECRET)
    r = await gw.post(
        "/budget/v1/commitments?dry_run=1", json={"amount": "10.00"},
        headers={**bearer(token("marketer", sub="mia", scopes=("region:EMEA",))), HEADER: forged,
                 "X-Request-ID": "req-abc", "X-Api-Key": "should-not-leak", "Connection": "keep-alive"},
    )
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["service"] == "budget" and seen["method"] == "POST"
    assert seen["path"] == "/v1/commitments" and seen["query"] == "dry_run=1"
    assert seen["body"] == '{"amount":"10.00"}'
    # The client's forged identity was stripped; the service saw the gateway's, for the token's subject.
    assert seen["principal"] == {"subject": "mia", "roles": ["marketer"], "scopes": ["region:EMEA"],
                                 "kind": "user", "request_id": "req-abc"}
    fwd = seen["headers"]
    assert "authorization" not in fwd and "x-api-key" not in fwd
    assert verify(fwd["x-pitcrew-identity"], DEV_IDENTITY_SECRET).subject == "mia"
    assert fwd["x-request-id"] == "req-abc" and fwd["x-forwarded-prefix"] == "/budget"
    assert fwd["x-forwarded-proto"] == "http" and fwd["x-forwarded-host"] == "gateway.test"
    assert "x-forwarded-for" in fwd
    assert r.headers["x-request-id"] == "req-abc"
    assert float(r.headers["x-gateway-latency"]) >= 0


async def test_request_id_is_generated_when_absent_and_non_json_answers_pass_through(gw, token):
    r = await gw.get("/registry/v1/text", headers=bearer(token("analyst")))
    assert r.status_code == 200 and r.text.startswith("flowchart LR")
    assert r.headers["content-type"].startswith("text/plain")
    assert len(r.headers["x-request-id"]) >= 16


async def test_each_prefix_reaches_its_own_service(gw, token):
    for service in ("budget", "workflow", "kpi", "registry"):
        r = await gw.get(f"/{service}/v1/anything/{service}", headers=bearer(token("admin")))
        assert r.status_code == 200 and r.json()["service"] == service
        assert r.json()["path"] == f"/v1/anything/{service}"


async def test_unknown_prefix_is_404_and_dot_segments_are_refused(gw, token):
    assert_problem(await gw.get("/billing/v1/x", headers=bearer(token("admin"))), 404)
    r = await gw.send(gw.build_request("POST", "/budget/v1/erp/..%2F..%2Fplans", headers=bearer(token("partner"))))
    assert r.status_code in (403, 404)


async def test_a_service_without_identity_refuses_the_call(upstreams):
    """The gateway cannot be bypassed: calling a service directly without X-Pitcrew-Identity is 401."""
    app = upstreams["budget.test"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://budget") as c:
        assert_problem(await c.get("/v1/items"), 401)
        forged = mint(Principal("x", frozenset({"admin"})), "another-secret-that-is-long-enough-000000")
        assert_problem(await c.get("/v1/items", headers={HEADER: forged}), 401)
        ok = mint(Principal("x", frozenset({"admin"})), DEV_IDENTITY_SECRET)
        assert (await c.get("/v1/items", headers={HEADER: ok})).status_code == 200


async def test_service_down_is_503_and_slow_is_504(new_db, host_router, token):
    settings = gateway_settings(await new_db("gateway"), upstream_timeout_seconds=0.3)
    async with running_gateway(settings, host_router) as gw:
        host_router.down.add("kpi.test")
        body = assert_problem(await gw.get("/kpi/v1/items", headers=bearer(token("admin"))), 503)
        assert "kpi" in body["detail"]
        r = await gw.get("/workflow/v1/slow?seconds=2", headers=bearer(token("admin")))
        assert_problem(r, 504)


class ClosingRouter(httpx.AsyncBaseTransport):
    """The first send of each request hits a keep-alive connection the service just closed."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.closed_once: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = f"{request.method} {request.url}"
        if key not in self.closed_once:
            self.closed_once.add(key)
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_read_on_a_connection_the_service_closed_is_sent_again_a_write_is_not(new_db, host_router, token):
    async with running_gateway(gateway_settings(await new_db("gateway")), ClosingRouter(host_router)) as gw:
        r = await gw.get("/kpi/v1/items?limit=2", headers=bearer(token("admin")))
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        before = dict(host_router.hits)
        body = assert_problem(await gw.post("/kpi/v1/measurements", json={}, headers=bearer(token("admin"))), 502)
        assert "kpi" in body["detail"] and host_router.hits == before  # the write reached nobody


async def test_round_robin_over_replicas_skips_one_that_refuses(new_db, host_router, token, upstreams):
    settings = gateway_settings(await new_db("gateway"), budget_url="http://budget.test, http://budget2.test")
    async with running_gateway(settings, host_router) as gw:
        for _ in range(6):
            assert (await gw.get("/budget/v1/items", headers=bearer(token("admin")))).status_code == 200
        assert host_router.hits["budget.test"] == 3 and host_router.hits["budget2.test"] == 3
        host_router.down.add("budget.test")
        for _ in range(4):
            assert (await gw.get("/budget/v1/items", headers=bearer(token("admin")))).status_code == 200
        assert host_router.hits["budget2.test"] == 7
        host_router.down.add("budget2.test")
        assert_problem(await gw.get("/budget/v1/items", headers=bearer(token("admin"))), 503)


async def test_metrics_label_proxied_routes_by_service_and_class(gw, token):
    for i in range(3):
        await gw.get(f"/kpi/v1/things/{i}", headers=bearer(token("admin")))
    await gw.post("/kpi/v1/things", json={}, headers=bearer(token("admin")))
    text = (await gw.get("/metrics")).text
    assert 'route="/kpi/* (read)"' in text and 'route="/kpi/* (write)"' in text
    assert "/kpi/v1/things/1" not in text


async def test_health_reports_each_service(gw, host_router):
    r = await gw.get("/health")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok"
    assert {s: v["status"] for s, v in body["services"].items()} == {
        "budget": "ready", "workflow": "ready", "kpi": "ready", "registry": "ready"}
    host_router.down.add("registry.test")
    body = (await gw.get("/health")).json()
    assert body["status"] == "degraded" and body["services"]["registry"]["status"] == "down"


async def test_openapi_merges_services_under_their_prefixes(gw, host_router):
    host_router.down.add("kpi.test")
    doc = (await gw.get("/openapi.json")).json()
    paths = doc["paths"]
    assert "/budget/v1/items" in paths and "/registry/v1/items" in paths and "/workflow/v1/slow" in paths
    assert "/gateway/v1/api-keys" in paths and "/webhooks/{source}" in paths
    assert not any(p.startswith("/kpi/") for p in paths) and doc["x-pitcrew-unavailable"] == ["kpi"]
    assert "/budget/health" not in paths
    # Schema names are prefixed per service and every reference resolves.
    refs = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    refs.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    names = set(doc["components"]["schemas"])
    assert refs and all(ref.rsplit("/", 1)[1] in names for ref in refs)
    assert any(n.startswith("Budget_") for n in names)
    assert (await gw.get("/docs")).status_code == 200


async def test_concurrent_requests_through_one_pool(gw, token):
    headers = bearer(token("analyst"))
    results = await asyncio.gather(*(gw.get("/registry/v1/items?limit=3", headers=headers) for _ in range(50)))
    assert all(r.status_code == 200 and len(r.json()["items"]) == 3 for r in results)
