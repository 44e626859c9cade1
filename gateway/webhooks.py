"""Signed webhooks from ERP and CRM systems: verification, translation, recording.

A delivery is verified (HMAC-SHA256 over "{timestamp}.{raw body}" with the
source's secret, timestamp within the tolerance), translated into calls of the
owning service's ingest endpoints (docs/events.md), and recorded in the same
transaction that claims its delivery id. The forwarder (gateway.delivery) then
hands it to the service, retrying until it lands, so nothing is lost and
nothing is applied twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError

from gateway.models import WebhookDelivery
from shared.db import Database, utcnow
from shared.errors import Errors, Invalid, NotFound, Unauthorized
from shared.identity import Principal

TIMESTAMP_HEADER = "X-Pitcrew-Timestamp"
DELIVERY_HEADER = "X-Pitcrew-Delivery"
SIGNATURE_HEADER = "X-Pitcrew-Signature"

PO_FIELDS = (
    "po_number",
    "revision",
    "fiscal_year",
    "budget_line",
    "period",
    "amount",
    "currency",
    "vendor",
    "description",
)
INVOICE_FIELDS = ("invoice_number", "po_number", "fiscal_year", "budget_line", "period", "amount", "currency", "vendor")
CRM_MEASUREMENTS = {
    "lead.created": [("leads", "lead")],
    "opportunity.created": [("opportunities", "opportunity")],
    "opportunity.won": [("won_deals", "won"), ("revenue", "revenue")],
}
TYPES = {
    "erp": ("purchase_order.created", "purchase_order.changed", "purchase_order.cancelled", "invoice.posted"),
    "crm": tuple(CRM_MEASUREMENTS),
}


def principal_for(source: str, request_id: str | None = None) -> Principal:
    """The internal identity a webhook's translated calls carry."""
    return Principal(subject=f"webhook:{source}", roles=frozenset({"partner"}), kind="service", request_id=request_id)


def sign(secret: str, timestamp: str | int, body: bytes) -> str:
    """The X-Pitcrew-Signature value for a body: what senders compute (and the tests)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secrets: dict[str, str],
    source: str,
    body: bytes,
    timestamp: str | None,
    delivery_id: str | None,
    signature: str | None,
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    """Raise NotFound for an unknown source and Unauthorized for anything not provably from it."""
    secret = secrets.get(source)
    if not secret:
        raise NotFound(f"No webhook source {source!r} is configured.")
    if not timestamp or not signature or not delivery_id:
        missing = [
            h
            for h, v in ((TIMESTAMP_HEADER, timestamp), (DELIVERY_HEADER, delivery_id), (SIGNATURE_HEADER, signature))
            if not v
        ]
        raise Unauthorized(f"Missing webhook header(s): {', '.join(missing)}.")
    if not 1 <= len(delivery_id) <= 200:
        raise Unauthorized(f"{DELIVERY_HEADER} must be 1 to 200 characters.")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized(f"{TIMESTAMP_HEADER} must be unix seconds.")  # (a huge one overflowed a float)
    ts = int(timestamp)
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_seconds:
        raise Unauthorized(
            f"{TIMESTAMP_HEADER} is {int(now - ts)} s away from the gateway's clock; "
            f"at most {tolerance_seconds} s is accepted (replayed or delayed delivery?)."
        )
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        raise Unauthorized(
            f"{SIGNATURE_HEADER} does not match the body (expected sha256=<hex HMAC-SHA256 of "
            '"{timestamp}.{raw body}"> with the source\'s secret).'
        )


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    try:
        doc = orjson.loads(body)  # refuses lone surrogates, NaN and invalid UTF-8, as the services do
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid.on("body", f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise Invalid.on("body", 'must be an object {"type": ..., "data": {...}}')
    errors = Errors()
    if not isinstance(doc.get("type"), str):
        errors.add("type", "required string")
    if not isinstance(doc.get("data"), dict):
        errors.add("data", "required object")
    errors.raise_if_any()
    return doc["type"], doc["data"]


def translate(source: str, event_type: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The service calls ([{service, path, body}]) a webhook becomes, as docs/events.md defines them."""
    known = TYPES.get(source)
    if known is None:
        raise NotFound(f"The gateway does not know how to translate webhooks from {source!r}.")
    if event_type not in known:
        raise Invalid.on("type", f"unknown {source} event type {event_type!r}; expected one of {', '.join(known)}")
    errors = Errors()
    if event_type.startswith("purchase_order."):
        _require(errors, data, "po_number", "revision", "fiscal_year", "budget_line")
        if event_type != "purchase_order.cancelled":
            _require(errors, data, "period", "amount", "currency")
        _decimal(errors, data, "amount")
        errors.raise_if_any()
        body = {"action": event_type.split(".", 1)[1], **{f: data.get(f) for f in PO_FIELDS}}
        return [{"service": "budget", "path": "/v1/erp/purchase-orders", "body": body}]
    if event_type == "invoice.posted":
        _require(errors, data, "invoice_number", "fiscal_year", "budget_line", "period", "amount", "currency")
        _decimal(errors, data, "amount")
        errors.raise_if_any()
        return [{"service": "budget", "path": "/v1/erp/invoices", "body": {f: data.get(f) for f in INVOICE_FIELDS}}]
    # CRM
    _require(errors, data, "id", "time")
    if event_type == "opportunity.won":
        _require(errors, data, "amount")
        _decimal(errors, data, "amount")
    errors.raise_if_any()
    dimensions = {k: data[k] for k in ("channel", "campaign", "region") if data.get(k) is not None}
    items = [
        {
            "type": mtype,
            "value": str(data["amount"]) if mtype == "revenue" else "1",
            "time": data["time"],
            "dimensions": dimensions,
            "source": "crm",
            "external_id": f"{prefix}:{data['id']}",
        }
        for mtype, prefix in CRM_MEASUREMENTS[event_type]
    ]
    return [{"service": "kpi", "path": "/v1/measurements", "body": {"items": items}}]


def _require(errors: Errors, data: dict[str, Any], *fields: str) -> None:
    for f in fields:
        if data.get(f) in (None, ""):
            errors.add(f"data.{f}", "required")


def _decimal(errors: Errors, data: dict[str, Any], field: str) -> None:
    value = data.get(field)
    if value is None:
        return
    if isinstance(value, float) or isinstance(value, bool):
        errors.add(f"data.{field}", 'must be a decimal string such as "1250.00" (never a float)')
        return
    try:
        ok = Decimal(str(value)).is_finite()
    except InvalidOperation:
        ok = False
    if not ok:
        errors.add(f"data.{field}", 'must be a decimal string such as "1250.00"')


async def record(
    db: Database,
    source: str,
    delivery_id: str,
    event_type: str,
    payload: dict[str, Any],
    requests: list[dict[str, Any]],
) -> tuple[WebhookDelivery, bool]:
    """Store the delivery; (row, False) when its id was seen before (then nothing is stored)."""
    now = utcnow()
    row = WebhookDelivery(
        id=str(uuid.uuid4()),
        source=source,
        delivery_id=delivery_id,
        event_type=event_type,
        payload=payload,
        requests=requests,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        received_at=now,
    )
    try:
        async with db.transaction() as s:
            s.add(row)
    except IntegrityError:
        return row, False
    return row, True


def backoff(attempts: int, base: float, cap: float) -> dt.timedelta:
    return dt.timedelta(seconds=min(cap, base * (2 ** max(0, attempts - 1))))
