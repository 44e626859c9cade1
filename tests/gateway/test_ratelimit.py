"""Rate limits per principal and route class: 429 problem+json with Retry-After."""

from __future__ import annotations

import json
import time

import pytest

from gateway.webhooks import sign
from tests.gateway.conftest import WEBHOOK_SECRETS, assert_problem, bearer, gateway_settings, running_gateway

pytestmark = pytest.mark.db


async def test_429_with_retry_after_per_principal_and_class(new_db, net, token):
    settings = gateway_settings(
        await new_db("gateway"), rate_limit_read="3/minute", rate_limit_write="2/minute", rate_limit_webhook="1/minute"
    )
    async with running_gateway(settings) as gw:
        dana, omar = bearer(token("admin", sub="dana")), bearer(token("admin", sub="omar"))
        for _ in range(3):
            assert (await gw.get("/budget/v1/items", headers=dana)).status_code == 200
        r = await gw.get("/kpi/v1/items", headers=dana)
        body = assert_problem(r, 429)
        assert 1 <= int(r.headers["retry-after"]) <= 60 and "read" in body["detail"]
        # Another principal has its own budget; writes are a separate class.
        assert (await gw.get("/budget/v1/items", headers=omar)).status_code == 200
        for _ in range(2):
            assert (await gw.post("/budget/v1/x", json={}, headers=dana)).status_code == 200
        assert_problem(await gw.post("/budget/v1/x", json={}, headers=dana), 429)
        # The gateway's own routes count too.
        assert_problem(await gw.get("/gateway/v1/api-keys", headers=dana), 429)
        # A new token for the same subject does not reset the counter.
        assert_problem(await gw.get("/budget/v1/items", headers=bearer(token("admin", sub="dana"))), 429)

        # Webhooks are limited per source.
        for i, expected in enumerate((202, 429)):
            raw = json.dumps({"type": "lead.created", "data": {"id": str(i), "time": "2027-01-01T00:00:00Z"}}).encode()
            ts = str(int(time.time()))
            r = await gw.post(
                "/webhooks/crm",
                content=raw,
                headers={
                    "X-Pitcrew-Timestamp": ts,
                    "X-Pitcrew-Delivery": f"rl-{i}",
                    "X-Pitcrew-Signature": sign(WEBHOOK_SECRETS["crm"], f"rl-{i}", ts, raw),
                },
            )
            assert r.status_code == expected, r.text
        assert "retry-after" in r.headers
