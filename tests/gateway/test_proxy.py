"""Routing, identity propagation, headers, failures, balancing, metrics, health and OpenAPI."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from prometheus_client import generate_latest

from pitcrew.launcher import free_port
from shared.errors import Unauthorized
from shared.identity import HEADER, Principal, mint, verify
from shared.settings import DEV_IDENTITY_SECRET
from tests.gateway.conftest import assert_problem, bearer, gateway_settings, running_gateway

pytestmark = pytest.mark.db


async def test_forwards_path_query_body_and_a_fresh_identity(gw, token, upstreams):
    forged = mint(Principal("mallory", frozenset({"admin"})), DEV_IDENTITY_SECRET)
    r = await gw.post(
        "/budget/v1/commitments?dry_run=1",
        json={"amount": "10.00"},
        headers={
            **bearer(token("marketer", sub="mia", scopes=("region:EMEA",))),
            HEADER: forged,
            "X-Request-ID": "req-abc",
            "X-Api-Key": "should-not-leak",
            "Connection": "keep-alive",
        },
    )
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["service"] == "budget" and seen["method"] == "POST"
    assert seen["path"] == "/v1/commitments" and seen["query"] == "dry_run=1"
    assert seen["body"] == '{"amount":"10.00"}'
    # The client's forged identity was stripped; the service saw the gateway's, for the token's subject.
    assert seen["principal"] == {
        "subject": "mia",
        "roles": ["marketer"],
        "scopes": ["region:EMEA"],
        "kind": "user",
        "request_id": "req-abc",
    }
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


async def test_a_service_without_identity_refuses_the_call(net):
    """The gateway cannot be bypassed: calling a service directly without X-Pitcrew-Identity is 401."""
    async with httpx.AsyncClient(base_url=net.hosts["budget.test"].direct_url) as c:
        assert_problem(await c.get("/v1/items"), 401)
        forged = mint(Principal("x", frozenset({"admin"})), "another-secret-that-is-long-enough-000000")
        assert_problem(await c.get("/v1/items", headers={HEADER: forged}), 401)
        ok = mint(Principal("x", frozenset({"admin"})), DEV_IDENTITY_SECRET)
        assert (await c.get("/v1/items", headers={HEADER: ok})).status_code == 200


async def test_service_down_is_503_and_slow_is_504(new_db, net, token):
    settings = gateway_settings(await new_db("gateway"), upstream_timeout_seconds=0.3)
    async with running_gateway(settings) as gw:
        assert (await gw.get("/kpi/v1/items", headers=bearer(token("admin")))).status_code == 200  # pooled
        await net.down("kpi.test")
        r = await gw.get("/kpi/v1/items", headers=bearer(token("admin")))
        body = assert_problem(r, 503)
        assert "kpi" in body["detail"] and r.headers["retry-after"] == "2" and r.headers["x-request-id"]
        r = await gw.get("/workflow/v1/slow?seconds=2", headers=bearer(token("admin")))
        assert_problem(r, 504)
        assert r.headers["x-request-id"]
        # The head came at once but the body did not: a timeout too, not a half answer.
        r = await gw.get("/workflow/v1/stall?seconds=2", headers=bearer(token("admin")))
        assert_problem(r, 504)
        # The service is back: the gateway reaches it again (a lone replica is always tried).
        await net.up("kpi.test")
        assert (await gw.get("/kpi/v1/items", headers=bearer(token("admin")))).status_code == 200


async def test_a_read_on_a_connection_the_service_closed_is_sent_again_a_write_is_not(new_db, net, token):
    door = net.door("kpi.test")
    async with running_gateway(gateway_settings(await new_db("gateway"))) as gw:
        admin = bearer(token("admin"))
        assert (await gw.get("/kpi/v1/items?limit=1", headers=admin)).status_code == 200  # a pooled connection
        door.close_reused(1)
        r = await gw.get("/kpi/v1/items?limit=2", headers=admin)
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        assert door.dropped == 1 and net.hits["kpi.test"] == 2  # the read went again and reached the service once
        for dropped, method in enumerate(("POST", "PUT", "PATCH", "DELETE"), start=2):
            before = dict(net.hits)
            door.close_reused(1)
            body = assert_problem(await gw.request(method, "/kpi/v1/measurements", json={}, headers=admin), 502)
            assert "kpi" in body["detail"] and "ServerDisconnected" in body["detail"], body
            assert door.dropped == dropped
            assert net.hits == before, method  # the write reached nobody, and was not sent again
            # The next write goes on a fresh connection and lands.
            assert (await gw.request(method, "/kpi/v1/measurements", json={}, headers=admin)).status_code == 200


async def test_a_read_is_sent_again_only_once(new_db, net, token):
    door = net.door("registry.test")
    async with running_gateway(gateway_settings(await new_db("gateway"))) as gw:
        admin = bearer(token("admin"))
        # Two connections in the pool (two requests in flight at once).
        results = await asyncio.gather(*(gw.get("/registry/v1/slow?seconds=0.05", headers=admin) for _ in range(2)))
        assert [r.status_code for r in results] == [200, 200] and door.accepted == 2
        hits = net.hits["registry.test"]
        door.close_reused(2)  # both pooled connections were closed by the service
        body = assert_problem(await gw.get("/registry/v1/items", headers=admin), 502)
        assert "registry" in body["detail"]
        assert door.dropped == 2 and net.hits["registry.test"] == hits  # sent twice in all, never a third time


async def test_idle_pooled_connections_are_dropped_after_the_keepalive_setting(new_db, net, token):
    door = net.door("kpi.test")
    settings = gateway_settings(await new_db("gateway"), upstream_keepalive_seconds=0.3)
    async with running_gateway(settings) as gw:
        admin = bearer(token("admin"))
        for _ in range(3):
            assert (await gw.get("/kpi/v1/items", headers=admin)).status_code == 200
        assert door.accepted == 1  # one keep-alive connection, reused
        await asyncio.sleep(0.5)  # idle longer than the setting (what is being tested is time passing)
        assert (await gw.get("/kpi/v1/items", headers=admin)).status_code == 200
        assert door.accepted == 2


async def test_streamed_answers_and_hop_by_hop_headers(gw, token, net):
    r = await gw.get("/registry/v1/items?limit=100", headers=bearer(token("admin")))
    assert r.status_code == 200 and len(r.json()["items"]) == 100
    assert int(r.headers["content-length"]) == len(r.content)
    assert "server" not in r.headers and "x-gateway-latency" in r.headers
    assert r.headers["x-request-id"] and r.headers.get_list("x-request-id") == [r.headers["x-request-id"]]
    # A client body is forwarded whole (past 64 KiB streamed, chunked); the hop-by-hop headers it sent are not.
    payload = "x" * 200_000
    r = await gw.post(
        "/kpi/v1/bulk",
        content=payload.encode(),
        headers={
            **bearer(token("admin")),
            "Content-Type": "text/plain",
            "TE": "trailers",
            "Upgrade": "h2c",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic eDp5",
        },
    )
    seen = r.json()
    assert r.status_code == 200 and seen["body"] == payload
    fwd = seen["headers"]
    assert fwd["content-type"] == "text/plain" and fwd["transfer-encoding"] == "chunked"
    assert "content-length" not in fwd  # the gateway counts what it forwards; the service reads to the end
    small = (await gw.post("/kpi/v1/bulk", content=b"x" * 1000, headers=bearer(token("admin")))).json()
    assert small["body"] == "x" * 1000 and small["headers"]["content-length"] == "1000"
    assert not {"te", "upgrade", "keep-alive", "proxy-authorization"} & set(fwd)
    # The client's own User-Agent and Accept-Encoding go through, none of the upstream client's.
    assert fwd["user-agent"].startswith("python-httpx") and fwd["accept-encoding"] == "gzip, deflate"
    # No body, no Content-Type made up for it.
    seen = (await gw.delete("/kpi/v1/things/1", headers=bearer(token("admin")))).json()
    assert seen["body"] is None and "content-type" not in seen["headers"]
    # A client that sends no Accept, Accept-Encoding or User-Agent: the gateway adds none.
    request = gw.build_request("GET", "/kpi/v1/things/1", headers=bearer(token("admin")))
    for name in ("accept", "accept-encoding", "user-agent"):
        del request.headers[name]
    seen = (await gw.send(request)).json()
    assert not {"accept", "accept-encoding", "user-agent", "content-type", "content-length"} & set(seen["headers"])


async def test_round_robin_over_replicas_skips_one_that_refuses(new_db, net, token, upstreams):
    replicas = f"{net.url('budget.test')}, {net.url('budget2.test')}"
    settings = gateway_settings(await new_db("gateway"), budget_url=replicas)
    async with running_gateway(settings) as gw:
        for _ in range(6):
            assert (await gw.get("/budget/v1/items", headers=bearer(token("admin")))).status_code == 200
        assert net.hits["budget.test"] == 3 and net.hits["budget2.test"] == 3
        await net.down("budget.test")
        for _ in range(4):
            assert (await gw.get("/budget/v1/items", headers=bearer(token("admin")))).status_code == 200
        assert net.hits["budget2.test"] == 7
        await net.down("budget2.test")
        assert_problem(await gw.get("/budget/v1/items", headers=bearer(token("admin"))), 503)


async def test_metrics_label_proxied_routes_by_service_and_class(new_db, net, token):
    port = free_port()
    async with running_gateway(gateway_settings(await new_db("gateway"), metrics_port=port)) as gw:
        for i in range(3):
            await gw.get(f"/kpi/v1/things/{i}", headers=bearer(token("admin")))
        await gw.post("/kpi/v1/things", json={}, headers=bearer(token("admin")))
        # The edge never serves its metrics to the internet: only on the metrics port.
        assert_problem(await gw.get("/metrics", headers=bearer(token("admin"))), 404)
        async with httpx.AsyncClient() as scraper:
            text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'route="/kpi/* (read)"' in text and 'route="/kpi/* (write)"' in text
    assert "/kpi/v1/things/1" not in text


async def test_public_paths_pass_without_a_credential_and_nothing_else_does(gw, net):
    hits = net.hits.get("notify.test", 0)
    r = await gw.get("/notify/v1/actions/some-signed-token")
    assert r.status_code != 401 and net.hits["notify.test"] == hits + 1
    assert_problem(await gw.get("/notify/v1/inbox"), 401)
    assert_problem(await gw.delete("/notify/v1/actions/some-signed-token"), 401)
    assert_problem(await gw.get("/notify/v1/actions/a/../../inbox"), 401)
    assert net.hits["notify.test"] == hits + 1


async def test_health_reports_each_service(gw, net):
    r = await gw.get("/health")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "ok"
    assert {s: v["status"] for s, v in body["services"].items()} == {
        "budget": "ready",
        "workflow": "ready",
        "kpi": "ready",
        "registry": "ready",
        "notify": "ready",
    }
    await net.down("registry.test")
    body = (await gw.get("/health")).json()
    assert body["status"] == "degraded" and body["services"]["registry"]["status"] == "down"


async def test_openapi_merges_services_under_their_prefixes(gw, net):
    await net.down("kpi.test")
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
    assert (await gw.get("/docs")).status_code == 200


async def test_concurrent_requests_through_one_pool(gw, token):
    headers = bearer(token("analyst"))
    results = await asyncio.gather(*(gw.get("/registry/v1/items?limit=3", headers=headers) for _ in range(50)))
    assert all(r.status_code == 200 and len(r.json()["items"]) == 3 for r in results)


async def test_an_unexpected_error_on_the_proxy_path_is_a_500_problem_with_the_request_id(gw, token, monkeypatch):
    limiter = gw.app.state.gateway.get().limiter

    async def broken(route_class, key):
        raise RuntimeError("storage exploded")

    monkeypatch.setattr(limiter, "check", broken)
    r = await gw.get("/kpi/v1/items", headers={**bearer(token("admin")), "X-Request-ID": "req-500"})
    body = assert_problem(r, 500)
    assert body["request_id"] == "req-500" and r.headers["x-request-id"] == "req-500"
    assert "storage exploded" not in r.text
    text = generate_latest().decode()  # this process's registry: what the metrics port serves
    assert 'route="/kpi/* (read)",service="gateway",status="500"' in text


def test_the_minted_identity_is_what_the_services_verify_and_is_reused_per_principal(monkeypatch):
    from gateway import identity

    minter = identity.IdentityMinter(DEV_IDENTITY_SECRET, 60)
    p = Principal("ana", frozenset({"finance", "analyst"}), frozenset({"region:EMEA", 'quote" \\ ünï'}), kind="api_key")
    token = minter.mint(p)
    seen = verify(token, DEV_IDENTITY_SECRET)
    assert (seen.subject, seen.roles, seen.scopes, seen.kind, seen.request_id) == (
        "ana",
        p.roles,
        p.scopes,
        "api_key",
        None,
    )
    assert minter.mint(p) == token  # reused: the service verifies it once
    other = Principal("ana", frozenset({"admin"}))  # same subject, other roles: a new token at once
    assert verify(minter.mint(other), DEV_IDENTITY_SECRET).roles == {"admin"}
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do
        verify(minter.mint(p), "another-secret-that-is-long-enough-000000")
    later = time.time() + 31  # past half its lifetime: a fresh one
    monkeypatch.setattr(identity.time, "time", lambda: later)
    fresh = minter.mint(p)
    import jwt

    assert fresh != token and jwt.decode(fresh, options={"verify_signature": False})["iat"] == int(later)


def test_the_verifier_checks_a_token_once_and_its_expiry_always(monkeypatch):
    from shared import identity as shared_identity

    verifier = shared_identity.Verifier(DEV_IDENTITY_SECRET, leeway=0)
    p = Principal("ana", frozenset({"finance"}))
    token = mint(p, DEV_IDENTITY_SECRET, ttl_seconds=1)
    assert verifier(token).subject == "ana"
    calls = []
    real = shared_identity._claims
    monkeypatch.setattr(shared_identity, "_claims", lambda *a: calls.append(a) or real(*a))
    assert verifier(token).roles == {"finance"} and calls == []  # the second time: no decoding
    monkeypatch.undo()
    time.sleep(1.1)  # past its expiry: refused although it was verified before
    with pytest.raises(Unauthorized, match="expired"):
        verifier(token)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(Unauthorized):
        shared_identity.Verifier(DEV_IDENTITY_SECRET)(tampered)
