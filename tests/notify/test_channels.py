"""Slack and Teams incoming webhooks and partner subscriptions, against a real HTTP receiver."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from gateway.webhooks import sign_standard
from services.notify import urls
from shared.db import utcnow
from shared.errors import Invalid
from tests.conftest import eventually
from tests.harness import assert_problem, identity
from tests.notify.conftest import add_person, client, domain

pytestmark = pytest.mark.db
PARTNER = identity("acme", "partner")


async def test_slack_and_teams_get_the_message_per_person_or_team(app, api, bus, receiver):
    await add_person(api, "fin", roles=["finance"], slack_webhook_url=f"{receiver.url}/slack/fin", team="money")
    r = await api.put("/v1/teams/money", json={"teams_webhook_url": f"{receiver.url}/teams/money"})
    assert r.status_code == 200, r.text
    async with client(app, identity("fin", "finance")) as fin:
        await fin.put("/v1/people/fin/preferences", json={"items": [{"kind": "*", "channels": ["slack", "teams"]}]})
    await bus.publish(
        "budget.line.threshold_crossed",
        {
            "line_id": "l1",
            "line_code": "EVENTS",
            "threshold": 100,
            "allocated": "10.00",
            "consumed": "12.00",
            "currency": "EUR",
        },
    )
    await eventually(lambda: len(receiver.accepted()) >= 2, timeout=15)
    slack = json.loads(receiver.accepted("/slack/fin")[0]["body"])
    teams = json.loads(receiver.accepted("/teams/money")[0]["body"])
    assert "EVENTS passed 100%" in slack["text"] and "12.00 of 10.00 EUR" in slack["text"]
    assert teams["@type"] == "MessageCard" and teams["title"] == "Budget line EVENTS passed 100%"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://localhost/x",
        "http://192.168.0.5/x",
        "ftp://example.com/x",
        "http://user:pw@example.com/x",
    ],
)
async def test_private_loopback_and_link_local_addresses_are_refused(url):
    with pytest.raises(Invalid) as err:
        await urls.check(url, "url", allow_private=False)
    assert err.value.errors[0].field == "url"


async def test_a_public_address_is_allowed():
    assert await urls.check("http://93.184.215.14/hook", "url", allow_private=False)


@pytest.mark.parametrize("overrides", [{"allow_private_urls": False}])
async def test_a_subscription_to_a_private_address_is_a_422(app, overrides):
    async with client(app, PARTNER) as acme:
        r = await acme.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook", "event_types": ["budget.*"]})
        assert_problem(r, 422, "url")
        assert (await acme.get("/v1/subscriptions")).json()["items"] == []


async def test_a_partner_receives_signed_events_in_order_once_even_after_failing_a_while(app, bus, receiver):
    async with client(app, PARTNER) as acme:
        r = await acme.post(
            "/v1/subscriptions", json={"url": f"{receiver.url}/acme", "event_types": ["budget.commitment.*"]}
        )
        assert r.status_code == 201, r.text
        sub = r.json()
        assert (
            sub["secret"].startswith("whsec_")
            and "secret" not in (await acme.get(f"/v1/subscriptions/{sub['id']}")).json()
        )
        assert_problem(await client(app, identity("zed", "partner")).get(f"/v1/subscriptions/{sub['id']}"), 404)
        assert_problem(await client(app, identity("mo", "mops")).get("/v1/subscriptions"), 403)

        receiver.status = 500  # the partner is down for a while
        sent = []
        for i in range(5):
            subject = "c-a" if i % 2 == 0 else "c-b"
            sent.append(
                await bus.publish(
                    f"budget.commitment.{'committed' if i < 4 else 'released'}",
                    {"commitment_id": subject, "n": i},
                    subject,
                )
            )
        await bus.publish("budget.line.created", {"line_id": "x"})  # not subscribed
        await eventually(lambda: len(receiver.requests) >= 6, timeout=15)
        receiver.status = 204
        await eventually(lambda: len(receiver.accepted()) >= 5, timeout=20)
        await asyncio.sleep(0.5)  # nothing more arrives
        got = receiver.accepted()
        assert len(got) == 5
        assert sorted(json.loads(g["body"])["id"] for g in got) == sorted(e.id for e in sent)
        for subject in ("c-a", "c-b"):
            order = [json.loads(g["body"])["data"]["n"] for g in got if json.loads(g["body"])["subject_id"] == subject]
            assert order == sorted(order)
        # Standard Webhooks: what the gateway's own verifier computes from the secret matches.
        h = got[0]["headers"]
        assert h["webhook-signature"] == sign_standard(
            sub["secret"], h["webhook-id"], h["webhook-timestamp"], got[0]["body"]
        )

        log = (await acme.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()["items"]
        assert len(log) == 5 and all(d["status"] == "delivered" for d in log)
        assert all(d["log"][-1]["status_code"] == 204 for d in log)
        first = [d for d in log if d["event_id"] in (sent[0].id, sent[1].id)]
        assert all(d["log"][0]["status_code"] == 500 and d["attempts"] >= 2 for d in first)
        assert all(a["latency_ms"] >= 0 for d in log for a in d["log"])

        # Redeliver one, then a range.
        r = await acme.post(f"/v1/subscriptions/{sub['id']}/redeliver", json={"delivery_id": log[0]["id"]})
        assert r.json() == {"redelivered": 1}
        await eventually(lambda: len(receiver.accepted()) >= 6, timeout=10)
        since = (utcnow() - dt.timedelta(minutes=5)).isoformat()
        until = (utcnow() + dt.timedelta(minutes=1)).isoformat()
        r = await acme.post(f"/v1/subscriptions/{sub['id']}/redeliver", json={"from": since, "to": until})
        assert r.json() == {"redelivered": 5}
        await eventually(lambda: len(receiver.accepted()) >= 11, timeout=10)
        assert_problem(await acme.post(f"/v1/subscriptions/{sub['id']}/redeliver", json={}), 422)
        assert_problem(await acme.post(f"/v1/subscriptions/{sub['id']}/redeliver", json={"delivery_id": "nope"}), 404)

        assert (await acme.delete(f"/v1/subscriptions/{sub['id']}")).status_code == 204
        assert_problem(await acme.get(f"/v1/subscriptions/{sub['id']}"), 404)


@pytest.mark.parametrize("overrides", [{"subscription_retry_seconds": 1.0}])
async def test_a_subscription_failing_past_its_window_is_disabled_and_its_owner_told(
    app, api, bus, receiver, smtp, overrides
):
    await add_person(api, "acme", roles=["partner"])
    async with client(app, PARTNER) as acme:
        sub = (await acme.post("/v1/subscriptions", json={"url": f"{receiver.url}/x", "event_types": ["kpi.>"]})).json()
        receiver.status = 503
        await bus.publish("kpi.target.at_risk", {"target_id": "t1"})

        async def disabled():
            return (await acme.get(f"/v1/subscriptions/{sub['id']}")).json()["status"] == "disabled"

        await eventually(disabled, timeout=20)
        await eventually(lambda: len(smtp.sink.messages) >= 1, timeout=10)
        (mail,) = smtp.sink.parsed()
        assert mail["To"] == "Acme <acme@example.com>" and "was disabled" in mail["Subject"]
        (delivery,) = (await acme.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()["items"]
        assert delivery["status"] == "failed" and delivery["attempts"] >= 2
        # Asking for it again turns the subscription back on.
        receiver.status = 200
        r = await acme.post(f"/v1/subscriptions/{sub['id']}/redeliver", json={"delivery_id": delivery["id"]})
        assert r.json() == {"redelivered": 1}
        await eventually(lambda: len(receiver.accepted()) == 1, timeout=10)
        assert (await acme.get(f"/v1/subscriptions/{sub['id']}")).json()["status"] == "active"
    assert domain(app).settings.subscription_retry_seconds == 1.0
