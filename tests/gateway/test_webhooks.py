"""Signed webhooks: verification, dedupe, translation to the services' ingest contracts, retries."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest
from sqlalchemy import select

from gateway.models import WebhookDelivery
from gateway.webhooks import sign, sign_standard, signed_headers, verify
from shared.errors import Unauthorized
from tests.conftest import eventually
from tests.gateway.conftest import WEBHOOK_SECRETS, bearer, gateway_settings, running_gateway
from tests.harness import assert_problem

pytestmark = pytest.mark.db


def signed(source: str, doc: dict, delivery: str, *, ts: int | None = None, secret: str | None = None):
    body = json.dumps(doc).encode()
    ts = int(time.time()) if ts is None else ts
    headers = {
        "Content-Type": "application/json",
        "X-Pitcrew-Timestamp": str(ts),
        "X-Pitcrew-Delivery": delivery,
        "X-Pitcrew-Signature": sign(secret or WEBHOOK_SECRETS[source], delivery, ts, body),
    }
    return body, headers


PO = {
    "po_number": "PO-1001",
    "revision": 2,
    "fiscal_year": 2027,
    "budget_line": "EMEA-EVENTS",
    "period": "2027-03",
    "amount": "12500.00",
    "currency": "EUR",
    "vendor": "Eventco",
    "description": "Booth at Expo",
}
INVOICE = {
    "invoice_number": "INV-77",
    "po_number": "PO-1001",
    "fiscal_year": 2027,
    "budget_line": "EMEA-EVENTS",
    "period": "2027-03",
    "amount": "5000.00",
    "currency": "EUR",
    "vendor": "Eventco",
}
# The ERP's own coordinates instead of a line code (the budget's mapping rules find the line).
MAPPED_INVOICE = {
    **{k: v for k, v in INVOICE.items() if k != "budget_line"},
    "company_code": "DE01",
    "cost_center": "CC-4100",
    "gl_account": "612000",
    "internal_order": "IO-SPRING",
}
CRM = {"id": "006A", "time": "2027-03-04T10:00:00Z", "channel": "search", "campaign": "spring", "region": "EMEA"}

CASES = [
    ("erp", "purchase_order.created", PO, "budget", "/v1/erp/purchase-orders", {"action": "created", **PO}),
    ("erp", "purchase_order.changed", PO, "budget", "/v1/erp/purchase-orders", {"action": "changed", **PO}),
    ("erp", "purchase_order.cancelled", PO, "budget", "/v1/erp/purchase-orders", {"action": "cancelled", **PO}),
    ("erp", "invoice.posted", INVOICE, "budget", "/v1/erp/invoices", INVOICE),
    (
        "erp",
        "purchase_order.created",
        {**PO, "budget_line": None, "cost_center": "CC-4100", "gl_account": "612000"},
        "budget",
        "/v1/erp/purchase-orders",
        {"action": "created", **PO, "budget_line": None, "cost_center": "CC-4100", "gl_account": "612000"},
    ),
    ("erp", "invoice.posted", MAPPED_INVOICE, "budget", "/v1/erp/invoices", {**MAPPED_INVOICE, "budget_line": None}),
    (
        "erp",
        "invoice.posted",
        {**INVOICE, "budget_line": None, "campaign_code": "SPRING-27"},
        "budget",
        "/v1/erp/invoices",
        {**INVOICE, "budget_line": None, "campaign_code": "SPRING-27"},
    ),
    (
        "crm",
        "lead.created",
        CRM,
        "kpi",
        "/v1/measurements",
        {
            "items": [
                {
                    "type": "leads",
                    "value": "1",
                    "time": CRM["time"],
                    "source": "crm",
                    "external_id": "lead:006A",
                    "dimensions": {"channel": "search", "campaign": "spring", "region": "EMEA"},
                }
            ]
        },
    ),
    (
        "crm",
        "opportunity.created",
        CRM,
        "kpi",
        "/v1/measurements",
        {
            "items": [
                {
                    "type": "opportunities",
                    "value": "1",
                    "time": CRM["time"],
                    "source": "crm",
                    "external_id": "opportunity:006A",
                    "dimensions": {"channel": "search", "campaign": "spring", "region": "EMEA"},
                }
            ]
        },
    ),
    (
        "crm",
        "opportunity.won",
        {**CRM, "amount": "48000.00"},
        "kpi",
        "/v1/measurements",
        {
            "items": [
                {
                    "type": "won_deals",
                    "value": "1",
                    "time": CRM["time"],
                    "source": "crm",
                    "external_id": "won:006A",
                    "dimensions": {"channel": "search", "campaign": "spring", "region": "EMEA"},
                },
                {
                    "type": "revenue",
                    "value": "48000.00",
                    "time": CRM["time"],
                    "source": "crm",
                    "external_id": "revenue:006A",
                    "dimensions": {"channel": "search", "campaign": "spring", "region": "EMEA"},
                },
            ]
        },
    ),
    (
        "crm",
        "lead.stage_changed",
        {**CRM, "stage": "mql"},
        "kpi",
        "/v1/measurements",
        {
            "items": [
                {
                    "type": "mqls",
                    "value": "1",
                    "time": CRM["time"],
                    "source": "crm",
                    "external_id": "mql:006A",
                    "dimensions": {"channel": "search", "campaign": "spring", "region": "EMEA"},
                }
            ]
        },
    ),
    (
        "crm",
        "opportunity.lost",
        {**CRM, "lead_id": "00QL1"},
        "kpi",
        "/v1/lifecycle",
        {
            "items": [
                {
                    "entity_id": "00QL1",
                    "stage": "lost",
                    "time": CRM["time"],
                    "source": "crm",
                    "dimensions": {"channel": "search", "campaign": "spring", "region": "EMEA"},
                }
            ]
        },
    ),
]


@pytest.mark.parametrize(
    "source, event_type, data, service, path, expected", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)]
)
async def test_translation_reaches_the_owning_service(
    gw, upstreams, request, source, event_type, data, service, path, expected
):
    delivery = f"d-{request.node.callspec.id}"
    body, headers = signed(source, {"type": event_type, "data": data}, delivery)
    r = await gw.post(f"/webhooks/{source}", content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == {"delivery_id": delivery, "status": "accepted", "duplicate": False}
    received = upstreams[f"{service}.test"].state.received
    await eventually(lambda: received)
    got = received[0]
    assert got["method"] == "POST" and got["path"] == path
    assert json.loads(got["body"]) == expected
    assert got["principal"]["subject"] == f"webhook:{source}" and got["principal"]["roles"] == ["partner"]
    assert got["principal"]["kind"] == "service"
    assert got["headers"]["idempotency-key"] == delivery


async def test_bad_signature_stale_timestamp_and_missing_headers_are_401(gw, upstreams):
    doc = {"type": "invoice.posted", "data": INVOICE}
    body, headers = signed("erp", doc, "x1", secret="wrong-secret")
    assert "Signature" in assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 401)["detail"]
    body, headers = signed("erp", doc, "x2")
    assert_problem(await gw.post("/webhooks/erp", content=body + b" ", headers=headers), 401)  # body tampered
    body, headers = signed("crm", doc, "x3")  # CRM's secret used on the ERP endpoint
    assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 401)
    body, headers = signed("erp", doc, "x4", ts=int(time.time()) - 301)
    assert "Timestamp" in assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 401)["detail"]
    body, headers = signed("erp", doc, "x5", ts=int(time.time()) + 400)
    assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 401)
    body, headers = signed("erp", doc, "x6")
    del headers["X-Pitcrew-Delivery"]
    assert "Delivery" in assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 401)["detail"]
    body, headers = signed("erp", doc, "x7")
    assert_problem(await gw.post("/webhooks/unknown", content=body, headers=headers), 404)
    for ts in ("9" * 400, "１７００000000", "-1", "1e9"):  # 400 digits overflowed a float: a 500 before any check
        body, headers = signed("erp", doc, "x9")
        headers["X-Pitcrew-Timestamp"] = ts
        r = await gw.post("/webhooks/erp", content=body, headers={k: v.encode() for k, v in headers.items()})
        assert "Timestamp" in assert_problem(r, 401)["detail"], ts
    # Within the window is fine.
    body, headers = signed("erp", doc, "x8", ts=int(time.time()) - 250)
    assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202
    async with gw.app.state.runtime.db.transaction(readonly=True) as s:
        stored = (await s.scalars(select(WebhookDelivery.delivery_id))).all()
    assert stored == ["x8"]


async def test_replay_is_a_duplicate_and_does_nothing(gw, upstreams):
    body, headers = signed("crm", {"type": "lead.created", "data": CRM}, "lead-1")
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202
    received = upstreams["kpi.test"].state.received
    await eventually(lambda: received)
    for _ in range(3):
        r = await gw.post("/webhooks/crm", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["duplicate"] is True
    # Concurrent first deliveries of one id: exactly one is accepted.
    body, headers = signed("crm", {"type": "lead.created", "data": {**CRM, "id": "L2"}}, "lead-2")
    results = await asyncio.gather(*(gw.post("/webhooks/crm", content=body, headers=headers) for _ in range(5)))
    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 202]
    await eventually(lambda: len(received) == 4)  # two deliveries, each a measurement and a lifecycle call
    await asyncio.sleep(0.3)
    assert len(received) == 4
    # The same delivery id from another source is a different delivery.
    body, headers = signed("erp", {"type": "invoice.posted", "data": INVOICE}, "lead-1")
    assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202


async def test_invalid_payloads_are_422_naming_the_field(gw):
    cases = [
        ({"type": "invoice.posted", "data": {**INVOICE, "amount": 12.5}}, "data.amount"),
        (
            {"type": "invoice.posted", "data": {k: v for k, v in INVOICE.items() if k != "invoice_number"}},
            "data.invoice_number",
        ),
        ({"type": "purchase_order.created", "data": {**PO, "amount": "12,5"}}, "data.amount"),
        ({"type": "opportunity.won", "data": CRM}, "data.amount"),
        ({"type": "lead.converted", "data": CRM}, "type"),
        ({"data": CRM}, "type"),
        # A lone surrogate cannot be stored, forwarded or answered (it was a 500 in the forwarder).
        ({"type": "invoice.posted", "data": {**INVOICE, "vendor": "\ud800"}}, "body"),
    ]
    for i, (doc, field) in enumerate(cases):
        source = "crm" if doc.get("type", "").startswith(("lead", "opportunity")) or "type" not in doc else "erp"
        body, headers = signed(source, doc, f"bad-{i}")
        r = await gw.post(f"/webhooks/{source}", content=body, headers=headers)
        assert field in {e["field"] for e in assert_problem(r, 422)["errors"]}, (doc, r.text)
    body, headers = signed("erp", {}, "bad-json")
    body = b"{nope"
    from gateway.webhooks import sign as _sign

    headers["X-Pitcrew-Signature"] = _sign(WEBHOOK_SECRETS["erp"], "bad-json", headers["X-Pitcrew-Timestamp"], body)
    assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 422)


async def test_a_service_that_is_down_gets_the_delivery_later(gw, upstreams, net, token):
    budget = upstreams["budget.test"]
    await net.down("budget.test")
    body, headers = signed("erp", {"type": "invoice.posted", "data": INVOICE}, "inv-down")
    assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202

    async def attempts():
        async with gw.app.state.runtime.db.transaction(readonly=True) as s:
            return (await s.scalars(select(WebhookDelivery))).one()

    await eventually(lambda: _attempted(attempts, 2))
    assert budget.state.received == []
    # Back up, but answering 503 twice first.
    budget.state.control["fail_next"] = 2
    await net.up("budget.test")
    await eventually(lambda: budget.state.received, timeout=15)
    row = await attempts()
    await eventually(lambda: _status(attempts, "delivered"))
    assert len(budget.state.received) == 1
    listed = (await gw.get("/gateway/v1/webhook-deliveries?status=delivered", headers=bearer(token("admin")))).json()[
        "items"
    ]
    assert [d["delivery_id"] for d in listed] == ["inv-down"] and listed[0]["attempts"] >= 4
    assert row.requests[0]["path"] == "/v1/erp/invoices"


async def test_a_lost_answer_is_replayed_not_applied_twice(gw, upstreams):
    """The forwarder sends with Idempotency-Key = delivery id: the service answers a resend from its store."""
    kpi = upstreams["kpi.test"]
    body, headers = signed("crm", {"type": "lead.created", "data": CRM}, "lead-once")
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202
    await eventually(lambda: kpi.state.received)
    forwarder = gw.app.state.gateway.get().forwarder
    async with gw.app.state.runtime.db.transaction() as s:
        row = (await s.scalars(select(WebhookDelivery))).one()
        row.status, row.attempts = "pending", 0  # as if the 2xx had been lost
    await eventually(lambda: _status(lambda: _one(gw), "delivered"))
    await forwarder.run_once()
    assert [r["path"] for r in kpi.state.received] == ["/v1/measurements", "/v1/lifecycle"]  # once each
    assert [r["headers"]["idempotency-key"] for r in kpi.state.received] == ["lead-once", "lead-once:1"]


async def test_a_rejected_payload_is_kept_for_operators(gw, upstreams, token):
    """A 4xx from the service means it will never take this payload: no retries, kept as `rejected`."""
    upstreams["budget.test"].state.control.update(fail_next=1, fail_status=422)
    body, headers = signed("erp", {"type": "invoice.posted", "data": INVOICE}, "inv-rej")
    assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202
    await eventually(lambda: _status(lambda: _one(gw), "rejected"))
    row = await _one(gw)
    assert row.last_status == 422 and row.attempts == 1 and "down" in row.last_error
    await asyncio.sleep(0.3)
    assert (await _one(gw)).attempts == 1 and upstreams["budget.test"].state.received == []
    listed = (await gw.get("/gateway/v1/webhook-deliveries?status=rejected", headers=bearer(token("admin")))).json()
    assert [d["delivery_id"] for d in listed["items"]] == ["inv-rej"]


async def _one(gw):
    async with gw.app.state.runtime.db.transaction(readonly=True) as s:
        return (await s.scalars(select(WebhookDelivery))).one()


async def _attempted(fetch, n):
    return (await fetch()).attempts >= n


async def _status(fetch, status):
    return (await fetch()).status == status


def standard(source: str, doc: dict, delivery: str, *, ts: int | None = None, secret: str | None = None):
    body = json.dumps(doc).encode()
    ts = int(time.time()) if ts is None else ts
    headers = {
        "Content-Type": "application/json",
        "webhook-id": delivery,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_standard(secret or WEBHOOK_SECRETS[source], delivery, ts, body),
    }
    return body, headers


def test_the_standard_webhooks_signature_is_the_specifications():
    """The example of the Standard Webhooks specification, computed independently of gateway.webhooks."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    assert expected == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign_standard(secret, msg_id, ts, body) == expected
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": f"v1a,xyz {expected}"}
    signed = signed_headers(headers, {"erp": secret}, "erp", tolerance_seconds=300, now=ts + 10)
    verify(secret, signed, body)
    with pytest.raises(Unauthorized):
        verify(secret, signed, body + b" ")


async def test_standard_webhooks_headers_are_accepted_and_deduplicated(gw, upstreams):
    body, headers = standard("crm", {"type": "lead.created", "data": CRM}, "msg_1")
    r = await gw.post("/webhooks/crm", content=body, headers=headers)
    assert r.status_code == 202 and r.json()["delivery_id"] == "msg_1", r.text
    await eventually(lambda: upstreams["kpi.test"].state.received)
    assert upstreams["kpi.test"].state.received[0]["headers"]["idempotency-key"] == "msg_1"
    r = await gw.post("/webhooks/crm", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["duplicate"] is True
    # A secret being rotated: the sender signs with both, either one verifies.
    body, headers = standard("crm", {"type": "lead.created", "data": {**CRM, "id": "L9"}}, "msg_2")
    old = sign_standard("the-old-secret", "msg_2", headers["webhook-timestamp"], body)
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202


@pytest.mark.parametrize("scheme", ["standard", "pitcrew"])
async def test_a_signed_webhook_resent_with_a_new_delivery_id_is_refused(gw, upstreams, scheme):
    make = standard if scheme == "standard" else signed
    body, headers = make("erp", {"type": "invoice.posted", "data": INVOICE}, "first")
    assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202
    id_header = "webhook-id" if scheme == "standard" else "X-Pitcrew-Delivery"
    replay = {**headers, id_header: "second"}  # same body, timestamp and signature, within the window
    body_ = assert_problem(await gw.post("/webhooks/erp", content=body, headers=replay), 401)
    assert "delivery id" in body_["detail"]
    async with gw.app.state.runtime.db.transaction(readonly=True) as s:
        assert (await s.scalars(select(WebhookDelivery.delivery_id))).all() == ["first"]


async def test_the_old_signature_without_the_delivery_id_is_refused(gw):
    body = json.dumps({"type": "invoice.posted", "data": INVOICE}).encode()
    ts = str(int(time.time()))
    old = hmac.new(WEBHOOK_SECRETS["erp"].encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Pitcrew-Timestamp": ts, "X-Pitcrew-Delivery": "d-old", "X-Pitcrew-Signature": f"sha256={old}"}
    assert_problem(await gw.post("/webhooks/erp", content=body, headers=headers), 401)


async def test_a_whsec_secret_is_used_as_the_bytes_it_encodes(new_db, net, upstreams):
    secret = "whsec_" + base64.b64encode(b"\x00\xff" * 16).decode()
    settings = gateway_settings(await new_db("gateway"), webhook_secrets={"crm": secret})
    async with running_gateway(settings) as gw:
        body, headers = standard("crm", {"type": "lead.created", "data": CRM}, "w-1", secret=secret)
        assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202
        body, headers = signed("crm", {"type": "lead.created", "data": CRM}, "w-2", secret=secret)
        assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202


BAD_ITEMS = [
    # What KPI would refuse: before, 202 and shown as delivered.
    ("crm", "lead.created", {**CRM, "time": "yesterday"}, "data.time"),
    ("crm", "lead.created", {**CRM, "time": "2027-03-04T10:00:00"}, "data.time"),  # no UTC offset
    ("crm", "lead.created", {**CRM, "time": "0001-01-01T00:00:00Z"}, "data.time"),  # outside the bounds
    ("crm", "lead.created", {k: v for k, v in CRM.items() if k != "time"}, "data.time"),
    ("crm", "lead.created", {**CRM, "id": "x" * 200}, "data.id"),  # external_id over 200 characters
    ("crm", "lead.created", {**CRM, "channel": "   "}, "data.channel"),
    ("crm", "lead.created", {**CRM, "region": ["EMEA"]}, "data.region"),
    ("crm", "opportunity.won", {**CRM, "amount": "lots"}, "data.amount"),
    ("crm", "opportunity.won", {**CRM, "amount": 48000.5}, "data.amount"),
    ("crm", "lead.stage_changed", CRM, "data.stage"),  # which stage?
    ("crm", "lead.stage_changed", {**CRM, "stage": "customer"}, "data.stage"),
    ("crm", "opportunity.lost", {**CRM, "lead_id": "L" * 201}, "data.lead_id"),
    ("crm", "opportunity.lost", {**CRM, "lead_id": ""}, "data.lead_id"),
    # What budget would refuse (its own input models).
    ("erp", "invoice.posted", {**INVOICE, "period": "2027-3"}, "data.period"),
    ("erp", "invoice.posted", {**INVOICE, "currency": "XXQ"}, "data.currency"),
    ("erp", "invoice.posted", {**INVOICE, "fiscal_year": 1999}, "data.fiscal_year"),
    ("erp", "purchase_order.created", {**PO, "revision": -1}, "data.revision"),
    ("erp", "purchase_order.changed", {k: v for k, v in PO.items() if k != "amount"}, "data.amount"),
    ("erp", "invoice.posted", {**INVOICE, "amount": "12.345"}, "data.amount"),  # more places than EUR has
    ("erp", "invoice.posted", {**INVOICE, "amount": "0"}, "data.amount"),
    # Neither a line code, coordinates to map, nor the purchase order it pays.
    (
        "erp",
        "invoice.posted",
        {k: v for k, v in INVOICE.items() if k not in ("budget_line", "vendor", "po_number")},
        "data.budget_line",
    ),
    (
        "erp",
        "purchase_order.created",
        {k: v for k, v in PO.items() if k not in ("budget_line", "vendor")},
        "data.budget_line",
    ),
    ("erp", "invoice.posted", {**MAPPED_INVOICE, "cost_center": ""}, "data.cost_center"),
    ("erp", "invoice.posted", {**MAPPED_INVOICE, "campaign_code": "C" * 201}, "data.campaign_code"),
]


@pytest.mark.parametrize("source, event_type, data, field", BAD_ITEMS, ids=[f"{c[1]}-{c[3]}" for c in BAD_ITEMS])
async def test_an_item_the_service_would_refuse_is_422_at_the_gateway(gw, upstreams, source, event_type, data, field):
    body, headers = signed(source, {"type": event_type, "data": data}, f"bad-{event_type}")
    r = await gw.post(f"/webhooks/{source}", content=body, headers=headers)
    assert field in {e["field"] for e in assert_problem(r, 422)["errors"]}, r.text
    async with gw.app.state.runtime.db.transaction(readonly=True) as s:
        assert (await s.scalars(select(WebhookDelivery))).all() == []


async def test_the_translated_time_is_what_kpi_reads(gw, upstreams):
    data = {**CRM, "time": "2027-03-04T12:00:00+02:00", "channel": " search "}
    body, headers = signed("crm", {"type": "lead.created", "data": data}, "t-1")
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202
    await eventually(lambda: upstreams["kpi.test"].state.received)
    item = json.loads(upstreams["kpi.test"].state.received[0]["body"])["items"][0]
    assert item["time"] == "2027-03-04T12:00:00+02:00" and item["dimensions"]["channel"] == "search"


async def test_a_crm_event_records_the_entitys_lifecycle_stage_after_its_measurements(gw, upstreams):
    """lead.stage_changed to SQL: the sqls measurement, then the lead's lifecycle fact (KPI's cohorts read it)."""
    data = {**CRM, "id": "00QL7", "stage": "SQL"}
    body, headers = signed("crm", {"type": "lead.stage_changed", "data": data}, "sql-1")
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202
    received = upstreams["kpi.test"].state.received
    await eventually(lambda: len(received) == 2)
    assert [r["path"] for r in received] == ["/v1/measurements", "/v1/lifecycle"]
    assert json.loads(received[0]["body"])["items"][0]["type"] == "sqls"
    fact = json.loads(received[1]["body"])["items"][0]
    assert (fact["entity_id"], fact["stage"], fact["time"]) == ("00QL7", "sql", CRM["time"])


async def test_a_delivery_whose_items_the_service_refused_is_not_shown_as_delivered(gw, upstreams, token):
    """KPI answers 200 with `rejected` items: the delivery did not land, and an operator sees why."""
    upstreams["kpi.test"].state.control["answer"] = (
        200,
        {"accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "reason": "type is unknown"}]},
    )
    body, headers = signed("crm", {"type": "lead.created", "data": CRM}, "lead-refused")
    assert (await gw.post("/webhooks/crm", content=body, headers=headers)).status_code == 202
    await eventually(lambda: _status(lambda: _one(gw), "rejected"))
    row = await _one(gw)
    assert row.last_status == 200 and "type is unknown" in row.last_error and row.delivered_at is None
    listed = (await gw.get("/gateway/v1/webhook-deliveries?status=rejected", headers=bearer(token("admin")))).json()
    assert [d["delivery_id"] for d in listed["items"]] == ["lead-refused"]


async def test_an_erp_invoice_the_budget_cannot_place_is_kept_in_suspense_and_posted_once(new_db, net):
    """Through the gateway to the real budget service: an invoice whose line code no plan has, or whose
    purchase order is not known and that names no line, is delivered (not rejected), waits in the
    budget's suspense queue, and is posted once when assigned; a redelivery changes nothing."""
    from tests.budget.conftest import FINANCE, start_budget
    from tests.gateway.network import ServiceHost

    app = await start_budget(await new_db("budget"))
    async with app.router.lifespan_context(app):
        host = ServiceHost("budget.real", app, {})
        await host.start()
        try:
            settings = gateway_settings(await new_db("gateway"), budget_url=host.direct_url)
            async with running_gateway(settings) as gw:
                budget = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://budget", headers=FINANCE
                )
                async with budget:
                    await _erp_invoices_kept(gw, budget)
        finally:
            await host.stop()


async def _erp_invoices_kept(gw, budget) -> None:
    plan = (await budget.post("/v1/plans", json={"name": "FY27", "fiscal_year": 2027, "currency": "EUR"})).json()
    assert (await budget.post(f"/v1/plans/{plan['id']}/activate")).status_code == 200
    line = (await budget.post(f"/v1/plans/{plan['id']}/lines", json={"code": "EMEA-EVENTS", "name": "Events"})).json()
    typo = {**INVOICE, "invoice_number": "INV-T", "po_number": None, "budget_line": "EMEA-EVNETS"}
    early = {k: v for k, v in INVOICE.items() if k not in ("budget_line", "vendor")} | {"invoice_number": "INV-E"}
    for i, data in enumerate((typo, early, typo)):  # the typo is delivered twice (the ERP resends it)
        body, headers = signed("erp", {"type": "invoice.posted", "data": data}, f"kept-{i}")
        assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202

    await eventually(delivered_n(gw, 3))
    waiting = (await budget.get("/v1/erp/suspense?status=waiting")).json()["items"]
    by_ref = {i["document_ref"]: i for i in waiting}
    assert sorted(by_ref) == ["INV-E", "INV-T"] and len(waiting) == 2  # the resent typo is the same item
    assert "'EMEA-EVNETS'" in by_ref["INV-T"]["reason"] and "'PO-1001' is not known" in by_ref["INV-E"]["reason"]
    for ref in ("INV-T", "INV-E"):
        url = f"/v1/erp/suspense/{by_ref[ref]['id']}/assign"
        assert (await budget.post(url, json={"budget_line": "EMEA-EVENTS"})).status_code == 200
        assert (await budget.post(url, json={"budget_line": "EMEA-EVENTS"})).status_code == 409  # once
    body, headers = signed("erp", {"type": "invoice.posted", "data": typo}, "kept-again")
    assert (await gw.post("/webhooks/erp", content=body, headers=headers)).status_code == 202
    await eventually(delivered_n(gw, 4))
    balance = (await budget.get(f"/v1/lines/{line['id']}/balance?from=2027-01&to=2027-12")).json()
    assert balance["spent"] == "10000.00"  # two invoices of 5000.00, each posted once
    assert (await budget.get("/v1/erp/suspense?status=waiting")).json()["items"] == []


def delivered_n(gw, n: int):
    async def check() -> bool:
        async with gw.app.state.runtime.db.transaction(readonly=True) as s:
            rows = (await s.scalars(select(WebhookDelivery))).all()
        return len(rows) == n and all(r.status == "delivered" for r in rows)

    return check
