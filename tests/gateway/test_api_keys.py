"""API keys: issued by admins, secret shown once and stored hashed, used, revoked, expired."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

from gateway.keys import hash_key
from gateway.models import ApiKey
from shared.pagination import encode_cursor
from tests.gateway.conftest import assert_problem, bearer

pytestmark = pytest.mark.db


async def test_lifecycle_create_use_revoke(gw, token):
    admin = bearer(token("admin", sub="root"))
    r = await gw.post(
        "/gateway/v1/api-keys",
        json={"name": "erp-sync", "roles": ["partner"], "scopes": ["region:EMEA"]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    created = r.json()
    secret = created["key"]
    assert secret.startswith("pck_") and len(secret) > 40
    assert created["status"] == "active" and created["created_by"] == "root" and created["last_used_at"] is None

    # Stored only as a hash.
    db = gw.app.state.runtime.db
    async with db.transaction(readonly=True) as s:
        row = (await s.scalars(select(ApiKey))).one()
    assert row.key_hash == hash_key(secret) and secret not in repr(row.__dict__)

    listed = (await gw.get("/gateway/v1/api-keys", headers=admin)).json()
    assert [k["id"] for k in listed["items"]] == [created["id"]]
    assert "key" not in listed["items"][0] and secret not in str(listed)

    r = await gw.post("/kpi/v1/measurements", json={"items": []}, headers={"X-API-Key": secret})
    assert r.status_code == 200, r.text
    assert r.json()["principal"] == {
        "subject": f"api_key:{created['id']}",
        "roles": ["partner"],
        "scopes": ["region:EMEA"],
        "kind": "api_key",
        "request_id": r.headers["x-request-id"],
    }
    assert "x-api-key" not in r.json()["headers"]
    # The key's roles are enforced by the policy like a token's.
    assert_problem(await gw.post("/kpi/v1/metrics", json={}, headers={"X-API-Key": secret}), 403)
    one = (await gw.get(f"/gateway/v1/api-keys/{created['id']}", headers=admin)).json()
    assert one["last_used_at"] is not None

    assert (await gw.delete(f"/gateway/v1/api-keys/{created['id']}", headers=admin)).status_code == 204
    body = assert_problem(await gw.get("/kpi/v1/items", headers={"X-API-Key": secret}), 401)
    assert "revoked" in body["detail"]
    assert (await gw.get("/gateway/v1/api-keys", headers=admin)).json()["items"] == []
    revoked = (await gw.get("/gateway/v1/api-keys?include_revoked=true", headers=admin)).json()["items"]
    assert revoked[0]["status"] == "revoked"
    assert (await gw.delete(f"/gateway/v1/api-keys/{created['id']}", headers=admin)).status_code == 204
    assert_problem(await gw.delete("/gateway/v1/api-keys/nope", headers=admin), 404)


async def test_expired_and_unknown_keys_are_401(gw, token):
    admin = bearer(token("admin"))
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    created = (
        await gw.post(
            "/gateway/v1/api-keys", json={"name": "crm", "roles": ["partner"], "expires_at": soon}, headers=admin
        )
    ).json()
    assert (await gw.get("/kpi/v1/items", headers={"X-API-Key": created["key"]})).status_code == 200
    async with gw.app.state.runtime.db.transaction() as s:
        await s.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    assert (
        "expired" in assert_problem(await gw.get("/kpi/v1/items", headers={"X-API-Key": created["key"]}), 401)["detail"]
    )
    assert_problem(await gw.get("/kpi/v1/items", headers={"X-API-Key": "pck_made-up"}), 401)
    assert_problem(await gw.get("/kpi/v1/items", headers={"X-API-Key": created["key"][:-1] + "x"}), 401)


async def test_only_admins_manage_keys_and_input_is_validated(gw, token):
    for role in ("mops", "finance", "partner", "analyst"):
        assert_problem(
            await gw.post(
                "/gateway/v1/api-keys", json={"name": "x", "roles": ["partner"]}, headers=bearer(token(role))
            ),
            403,
        )
        assert_problem(await gw.get("/gateway/v1/api-keys", headers=bearer(token(role))), 403)
    assert_problem(await gw.get("/gateway/v1/api-keys"), 401)
    admin = bearer(token("admin"))
    body = assert_problem(await gw.post("/gateway/v1/api-keys", json={"name": "", "roles": []}, headers=admin), 422)
    assert {e["field"] for e in body["errors"]} == {"name", "roles"}
    body = assert_problem(
        await gw.post("/gateway/v1/api-keys", json={"name": "x", "roles": ["wizard"]}, headers=admin), 422
    )
    assert body["errors"][0]["field"] == "roles"
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    body = assert_problem(
        await gw.post(
            "/gateway/v1/api-keys", json={"name": "x", "roles": ["partner"], "expires_at": past}, headers=admin
        ),
        422,
    )
    assert body["errors"][0]["field"] == "expires_at"
    body = assert_problem(
        await gw.post(
            "/gateway/v1/api-keys",
            json={"name": "x", "roles": ["partner"], "expires_at": "2099-01-01T00:00:00"},
            headers=admin,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "expires_at"
    # Near the end of Python's dates, converting to UTC overflowed (a 500 when the row was bound).
    body = assert_problem(
        await gw.post(
            "/gateway/v1/api-keys",
            json={"name": "x", "roles": ["partner"], "expires_at": "9999-12-31T23:59:59-01:00"},
            headers=admin,
        ),
        422,
    )
    assert body["errors"][0]["field"] == "expires_at" and "2999-12-31" in body["detail"]
    async with gw.app.state.runtime.db.transaction(readonly=True) as s:
        assert await s.scalar(select(func.count()).select_from(ApiKey)) == 0


async def test_hand_made_cursors_are_422(gw, token):
    admin = bearer(token("admin"))
    for url in ("/gateway/v1/api-keys", "/gateway/v1/webhook-deliveries"):
        for key in (
            ["2027-01-01", "x"],
            ["2027-01-01T00:00:00", "x"],
            ["0001-01-01T00:00:00+01:00", "x"],
            ["9999-12-31T23:59:59.999999", "x"],
        ):
            r = await gw.get(url, params={"cursor": encode_cursor(*key)}, headers=admin)
            assert assert_problem(r, 422)["errors"][0]["field"] == "query.cursor", (url, key)


async def test_list_is_paginated(gw, token):
    admin = bearer(token("admin"))
    ids = [
        (await gw.post("/gateway/v1/api-keys", json={"name": f"k{i}", "roles": ["partner"]}, headers=admin)).json()[
            "id"
        ]
        for i in range(5)
    ]
    seen, cursor = [], None
    while True:
        page = (
            await gw.get(
                "/gateway/v1/api-keys", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=admin
            )
        ).json()
        seen += [k["id"] for k in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


@pytest.mark.parametrize("scopes", [[], ["region:APAC"], ["region:EMEA", "region:APAC"], ["channel:search"]])
async def test_a_scoped_admin_cannot_issue_a_key_that_reaches_further(gw, token, scopes):
    admin = bearer(token("admin", sub="emea-admin", scopes=("region:EMEA",)))
    r = await gw.post(
        "/gateway/v1/api-keys", json={"name": "wide", "roles": ["partner"], "scopes": scopes}, headers=admin
    )
    body = assert_problem(r, 403)
    assert [e["field"] for e in body["errors"]] == ["scopes"]
    listed = await gw.get("/gateway/v1/api-keys", headers=bearer(token("admin")))
    assert listed.json()["items"] == []


@pytest.mark.parametrize("scopes", [["region:EMEA"], ["region:EMEA", "channel:search"]])
async def test_a_scoped_admin_may_issue_keys_as_narrow_as_itself(gw, token, scopes):
    admin = bearer(token("admin", sub="emea-admin", scopes=("region:EMEA",)))
    r = await gw.post(
        "/gateway/v1/api-keys", json={"name": "narrow", "roles": ["partner"], "scopes": scopes}, headers=admin
    )
    assert r.status_code == 201, r.text


async def test_a_supplier_key_needs_its_supplier_scope_and_reaches_only_its_work(gw, token):
    admin = bearer(token("admin"))
    body = {"name": "acme portal", "roles": ["supplier"], "scopes": ["region:EMEA"]}
    problem = assert_problem(await gw.post("/gateway/v1/api-keys", json=body, headers=admin), 422)
    assert problem["errors"][0]["field"] == "scopes"
    body["scopes"] = ["supplier:acme"]
    r = await gw.post("/gateway/v1/api-keys", json=body, headers=admin)
    assert r.status_code == 201, r.text
    key = {"X-API-Key": r.json()["key"]}
    mine = await gw.get("/workflow/v1/deliverables", headers=key)
    assert mine.status_code == 200 and mine.json()["principal"]["scopes"] == ["supplier:acme"]
    for path in ("/budget/v1/plans", "/workflow/v1/requests", "/kpi/v1/metrics", "/registry/v1/tools"):
        assert_problem(await gw.get(path, headers=key), 403)
