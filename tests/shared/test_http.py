"""Identity, problem+json, idempotency and the operations routes of a shared-library app."""

from __future__ import annotations

import datetime as dt

import httpx
import jwt
import pytest

from shared.identity import HEADER, Principal, mint
from shared.settings import DEV_IDENTITY_SECRET
from tests.conftest import eventually
from tests.shared.sample import create_schema, make_app

pytestmark = pytest.mark.db


@pytest.fixture()
async def app(new_db, nats_url):
    application = make_app(await new_db("http"), nats_url)
    await create_schema(application.state.runtime)
    async with application.router.lifespan_context(application):
        yield application


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://sample"
    )


def identity(*roles: str, subject: str = "dana", secret: str = DEV_IDENTITY_SECRET, ttl: int = 60) -> dict:
    return {HEADER: mint(Principal(subject, frozenset(roles)), secret, ttl)}


def assert_problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


async def test_missing_expired_forged_identity_is_401(app):
    async with client(app) as c:
        body = assert_problem(await c.get("/v1/admin-only"), 401)
        assert "gateway" in body["detail"]
        expired = {
            HEADER: jwt.encode(
                {
                    "iss": "pitcrew-gateway",
                    "aud": "pitcrew-services",
                    "sub": "x",
                    "roles": ["admin"],
                    "exp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
                },
                DEV_IDENTITY_SECRET,
                algorithm="HS256",
            )
        }
        assert "expired" in assert_problem(await c.get("/v1/admin-only", headers=expired), 401)["detail"]
        forged = identity("admin", secret="not-the-internal-key-but-long-enough-0123456789")
        assert_problem(await c.get("/v1/admin-only", headers=forged), 401)
        wrong_alg = {HEADER: jwt.encode({"sub": "x", "roles": ["admin"]}, None, algorithm="none")}
        assert_problem(await c.get("/v1/admin-only", headers=wrong_alg), 401)
        assert_problem(await c.get("/v1/admin-only", headers=identity("marketer")), 403)
        r = await c.get("/v1/admin-only", headers=identity("finance"))
        assert r.status_code == 200 and r.json() == {"subject": "dana"}
        # A subject no author column can hold is refused even from a validly signed token.
        for sub in ("s" * 201, "dana\ud800", "a\u0000b"):
            token = mint(Principal(sub, frozenset({"admin"})), DEV_IDENTITY_SECRET, 60)
            assert "sub" in assert_problem(await c.get("/v1/admin-only", headers={HEADER: token}), 401)["detail"]


async def test_validation_errors_name_every_bad_field(app):
    async with client(app) as c:
        r = await c.post("/v1/things", json={"name": "", "amount": "-3"}, headers=identity("admin"))
        body = assert_problem(r, 422)
        fields = {e["field"] for e in body["errors"]}
        assert fields == {"name", "amount"}
        r = await c.post(
            "/v1/things", content=b"{not json", headers={**identity("admin"), "content-type": "application/json"}
        )
        assert_problem(r, 422)


async def test_unexpected_errors_are_500_problems_that_leak_nothing(app):
    async with client(app) as c:
        r = await c.get("/v1/boom", headers={**identity("admin"), "X-Request-ID": "req-123"})
        body = assert_problem(r, 500)
        assert "hunter2" not in r.text and "RuntimeError" not in r.text
        assert body["request_id"] == "req-123" and r.headers["x-request-id"] == "req-123"


async def test_idempotency_key_replays_the_first_answer_and_refuses_a_different_body(app):
    async with client(app) as c:
        h = {**identity("admin"), "Idempotency-Key": "k-1"}
        first = await c.post("/v1/things", json={"name": "a", "amount": "1.50"}, headers=h)
        assert first.status_code == 201 and first.json()["amount"] == "1.50"
        again = await c.post("/v1/things", json={"name": "a", "amount": "1.50"}, headers=h)
        assert again.status_code == 201 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        other = await c.post("/v1/things", json={"name": "b", "amount": "1.50"}, headers=h)
        assert_problem(other, 409)
        fresh = await c.post(
            "/v1/things", json={"name": "a", "amount": "1.50"}, headers={**identity("admin"), "Idempotency-Key": "k-2"}
        )
        assert fresh.json()["id"] == first.json()["id"] + 1


async def test_health_ready_metrics(app):
    async with client(app) as c:
        assert (await c.get("/health")).json()["status"] == "ok"
        await eventually(lambda: app.state.runtime.bus.connected)
        ready = await c.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["nats"]["ok"] is True
        assert ready.json()["checks"]["database"]["ok"] is True
        assert (await c.get("/metrics")).status_code == 401  # only an internal identity reads them here
        assert (await c.get("/openapi.json")).status_code == 401
        admin = mint(Principal("ops", frozenset({"admin"})), DEV_IDENTITY_SECRET)
        metrics = await c.get("/metrics", headers={HEADER: admin})
        assert "pitcrew_http_requests_total" in metrics.text
        assert (await c.get("/openapi.json", headers={HEADER: admin})).json()["openapi"].startswith("3.")
        for page in ("/docs", "/redoc"):
            assert (await c.get(page)).status_code == 404  # documentation pages live at the gateway
