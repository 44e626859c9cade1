"""Signed webhooks from ERP and CRM systems: verification, translation, recording.

A delivery is signed over its delivery id, its timestamp and its raw body with the
source's secret, so neither can be changed without the secret: two header sets are
accepted (docs/gateway.md),

- Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64
  HMAC-SHA256 of "{id}.{timestamp}.{body}">` (several space-separated during a rotation);
- Pitcrew's: `X-Pitcrew-Delivery`, `X-Pitcrew-Timestamp`, `X-Pitcrew-Signature:
  sha256=<hex HMAC-SHA256 of "{delivery}.{timestamp}.{body}">`.

The headers are checked for presence, shape and time window before the body is read
(`signed_headers`), the signature once it has been (`verify`). A secret written as
`whsec_<base64>` (Standard Webhooks' form) is used as the bytes it encodes, any other as
its UTF-8 text. A verified delivery is translated into calls of the owning service's
ingest endpoints (docs/events.md), each checked against that service's own input rules
first (a payload the service would refuse is a 422 here, naming the field), and recorded
in the same transaction that claims its delivery id. The forwarder (gateway.delivery)
then hands it to the service, retrying until it lands, so nothing is lost and nothing is
applied twice.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy.exc import IntegrityError

from gateway.models import WebhookDelivery
from services.budget.schemas import ERP_COORDINATES, InvoiceIn, PurchaseOrderIn
from services.kpi.schemas import LifecycleIn
from shared.bounds import Instant
from shared.db import Database, utcnow
from shared.errors import Errors, FieldError, Invalid, NotFound, Unauthorized
from shared.identity import Principal
from shared.money import DecimalStr

TIMESTAMP_HEADER = "X-Pitcrew-Timestamp"
DELIVERY_HEADER = "X-Pitcrew-Delivery"
SIGNATURE_HEADER = "X-Pitcrew-Signature"
SW_ID_HEADER = "webhook-id"
SW_TIMESTAMP_HEADER = "webhook-timestamp"
SW_SIGNATURE_HEADER = "webhook-signature"
SW_SECRET_PREFIX = "whsec_"
MAX_SIGNATURES = 8  # entries in one webhook-signature header (a rotation needs two)
DELIVERY_ID_MAX = 200  # the width of webhook_deliveries.delivery_id

# A document names its budget line by code (`budget_line`) or by its ERP coordinates, which the
# budget's mapping rules turn into one; the coordinates (beyond the vendor) travel only when sent.
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
COORDINATES = tuple(c for c in ERP_COORDINATES if c != "vendor")  # company code, cost centre, GL account, order
CRM_MEASUREMENTS: dict[str, list[tuple[str, str]]] = {
    "lead.created": [("leads", "lead")],
    "lead.stage_changed": [],  # by the stage reached: STAGE_MEASUREMENTS
    "opportunity.created": [("opportunities", "opportunity")],
    "opportunity.won": [("won_deals", "won"), ("revenue", "revenue")],
    "opportunity.lost": [],
}
STAGE_MEASUREMENTS = {"MQL": [("mqls", "mql")], "SQL": [("sqls", "sql")]}
# The lifecycle stage (KPI's POST /v1/lifecycle) each CRM event records for its entity.
CRM_STAGES = {"lead.created": "lead", "opportunity.created": "opportunity", "opportunity.won": "won"}
CRM_STAGES["opportunity.lost"] = "lost"
TYPES = {
    "erp": ("purchase_order.created", "purchase_order.changed", "purchase_order.cancelled", "invoice.posted"),
    "crm": tuple(CRM_MEASUREMENTS),
}
# A measurement's external_id is at most 200 characters (KPI's rule): "<prefix>:<CRM id>".
CRM_ID_MAX = 200 - 1 - max(len(prefix) for pairs in CRM_MEASUREMENTS.values() for _t, prefix in pairs)
M = TypeVar("M", bound=BaseModel)
Dimension = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class CrmData(BaseModel):
    """What a CRM event's data must hold to become KPI measurements: the API's own bounds on an
    instant (shared.bounds) and on money (shared.money), KPI's on an external id and a dimension."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=CRM_ID_MAX)
    time: Instant
    channel: Dimension | None = None
    campaign: Dimension | None = None
    region: Dimension | None = None
    amount: DecimalStr | None = None
    stage: str | None = Field(default=None, max_length=20, description="lead.stage_changed: MQL or SQL")
    lead_id: str | None = Field(
        default=None, min_length=1, max_length=200, description="an opportunity's lead: its lifecycle entity"
    )


def principal_for(source: str, request_id: str | None = None) -> Principal:
    """The internal identity a webhook's translated calls carry."""
    return Principal(subject=f"webhook:{source}", roles=frozenset({"partner"}), kind="service", request_id=request_id)


def key_of(secret: str) -> bytes:
    """The HMAC key of a configured secret: `whsec_<base64>` is the bytes it encodes, anything else its text."""
    if secret.startswith(SW_SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SW_SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def _mac(secret: str, delivery_id: str, timestamp: str | int, body: bytes) -> bytes:
    message = f"{delivery_id}.{timestamp}.".encode() + body
    return hmac.new(key_of(secret), message, hashlib.sha256).digest()


def sign(secret: str, delivery_id: str, timestamp: str | int, body: bytes) -> str:
    """The X-Pitcrew-Signature value: what senders compute (and the tests, the demo)."""
    return "sha256=" + _mac(secret, delivery_id, timestamp, body).hex()


def sign_standard(secret: str, delivery_id: str, timestamp: str | int, body: bytes) -> str:
    """The webhook-signature value (Standard Webhooks, version v1)."""
    return "v1," + base64.b64encode(_mac(secret, delivery_id, timestamp, body)).decode()


@dataclass(frozen=True)
class Signed:
    """A delivery's signature headers, present and well formed, its timestamp within the window."""

    scheme: Literal["standard", "pitcrew"]
    delivery_id: str
    timestamp: str
    signatures: tuple[bytes, ...]  # the MACs the sender claims (one per accepted entry)


def signed_headers(
    headers: Mapping[str, str],
    secrets: Mapping[str, str],
    source: str,
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> Signed:
    """What can be checked before the body is read: NotFound for an unknown source, Unauthorized for
    missing, malformed or stale signature headers."""
    if not secrets.get(source):
        raise NotFound(f"No webhook source {source!r} is configured.")
    standard = any(h in headers for h in (SW_ID_HEADER, SW_TIMESTAMP_HEADER, SW_SIGNATURE_HEADER))
    names = (
        (SW_ID_HEADER, SW_TIMESTAMP_HEADER, SW_SIGNATURE_HEADER)
        if standard
        else (DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
    )
    delivery_id, timestamp, signature = (headers.get(h) or "" for h in names)
    missing = [h for h, v in zip(names, (delivery_id, timestamp, signature), strict=True) if not v]
    if missing:
        raise Unauthorized(
            f"Missing webhook header(s): {', '.join(missing)}. Sign with Standard Webhooks ({SW_ID_HEADER}, "
            f"{SW_TIMESTAMP_HEADER}, {SW_SIGNATURE_HEADER}) or with {DELIVERY_HEADER}, {TIMESTAMP_HEADER}, "
            f"{SIGNATURE_HEADER}."
        )
    if len(delivery_id) > DELIVERY_ID_MAX or not delivery_id.isprintable():
        raise Unauthorized(f"{names[0]} must be 1 to {DELIVERY_ID_MAX} printable characters.")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized(f"{names[1]} must be unix seconds.")  # (a huge one overflowed a float)
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise Unauthorized(
            f"{names[1]} is {int(now - int(timestamp))} s away from the gateway's clock; "
            f"at most {tolerance_seconds} s is accepted (replayed or delayed delivery?)."
        )
    macs = _standard_macs(signature) if standard else _pitcrew_mac(signature)
    if not macs:
        expected = (
            'v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">'
            if standard
            else 'sha256=<hex HMAC-SHA256 of "{delivery}.{timestamp}.{body}">'
        )
        raise Unauthorized(f"{names[2]} is not of the form {expected}.")
    return Signed("standard" if standard else "pitcrew", delivery_id, timestamp, macs)


def _standard_macs(value: str) -> tuple[bytes, ...]:
    entries = value.split()
    if len(entries) > MAX_SIGNATURES:
        return ()
    macs = []
    for entry in entries:
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # another scheme (v1a: asymmetric) this gateway does not verify
        try:
            mac = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            return ()
        if len(mac) == hashlib.sha256().digest_size:
            macs.append(mac)
    return tuple(macs)


def _pitcrew_mac(value: str) -> tuple[bytes, ...]:
    hexdigest = value.strip().removeprefix("sha256=")
    if not value.strip().startswith("sha256=") or len(hexdigest) != 64:
        return ()
    try:
        return (bytes.fromhex(hexdigest),)
    except ValueError:
        return ()


def verify(secret: str, signed: Signed, body: bytes) -> None:
    """Unauthorized unless one of the claimed signatures is the body's, with this delivery id and timestamp."""
    expected = _mac(secret, signed.delivery_id, signed.timestamp, body)
    if not any(hmac.compare_digest(expected, mac) for mac in signed.signatures):
        header = SW_SIGNATURE_HEADER if signed.scheme == "standard" else SIGNATURE_HEADER
        raise Unauthorized(
            f"{header} does not match: it must be the HMAC-SHA256 of "
            '"{delivery id}.{timestamp}.{raw body}" with the source\'s secret.'
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
    """The service calls ([{service, path, body}]) a webhook becomes, as docs/events.md defines them;
    Invalid (422, naming `data.<field>`) when the owning service would refuse one."""
    known = TYPES.get(source)
    if known is None:
        raise NotFound(f"The gateway does not know how to translate webhooks from {source!r}.")
    if event_type not in known:
        raise Invalid.on("type", f"unknown {source} event type {event_type!r}; expected one of {', '.join(known)}")
    if event_type.startswith("purchase_order."):
        body = {"action": event_type.split(".", 1)[1], **{f: data.get(f) for f in PO_FIELDS}, **_coordinates(data)}
        po = _valid(PurchaseOrderIn, body)
        missing = po.missing_for_upsert()  # budget's own rule for what a change needs
        if missing:
            raise Invalid(
                "; ".join(f"data.{m}: is required for {event_type}" for m in missing),
                errors=[FieldError(f"data.{m}", f"is required for {event_type}", "missing") for m in missing],
            )
        return [{"service": "budget", "path": "/v1/erp/purchase-orders", "body": body}]
    if event_type == "invoice.posted":
        body = {**{f: data.get(f) for f in INVOICE_FIELDS}, **_coordinates(data)}
        invoice = _valid(InvoiceIn, body)
        if invoice.missing():
            raise Invalid.on(
                "data.budget_line",
                f"is required for {event_type} unless ERP coordinates or a po_number are given",
                "missing",
            )
        invoice.check_money("data.")  # the budget keeps any sound invoice; a malformed one is refused here
        return [{"service": "budget", "path": "/v1/erp/invoices", "body": body}]
    return _crm_calls(event_type, _valid(CrmData, data), data)


def _crm_calls(event_type: str, crm: CrmData, data: dict[str, Any]) -> list[dict[str, Any]]:
    """A CRM event's measurements (leads, mqls, sqls, opportunities, won deals, revenue) and its lifecycle fact."""
    pairs = CRM_MEASUREMENTS[event_type]
    stage = CRM_STAGES.get(event_type)
    if event_type == "lead.stage_changed":
        reached = (crm.stage or "").strip().upper()
        if reached not in STAGE_MEASUREMENTS:
            field_error = "is required" if crm.stage is None else f"{crm.stage!r} is not a stage KPI counts"
            raise Invalid.on("data.stage", f"{field_error}: MQL or SQL", "missing" if crm.stage is None else "invalid")
        pairs, stage = STAGE_MEASUREMENTS[reached], reached.lower()
    if event_type == "opportunity.won" and crm.amount is None:
        raise Invalid.on("data.amount", f"is required for {event_type} (the revenue)", "missing")
    dimensions = {k: v for k in ("channel", "campaign", "region") if (v := getattr(crm, k)) is not None}
    items = [
        {
            "type": mtype,
            "value": str(data["amount"]) if mtype == "revenue" else "1",
            "time": _iso(crm.time),
            "dimensions": dimensions,
            "source": "crm",
            "external_id": f"{prefix}:{crm.id}",
        }
        for mtype, prefix in pairs
    ]
    entity = crm.lead_id if crm.lead_id and event_type.startswith("opportunity.") else crm.id
    fact = {"entity_id": entity, "stage": stage, "time": _iso(crm.time), "dimensions": dimensions, "source": "crm"}
    _valid_fact(fact, "data.lead_id" if entity == crm.lead_id else "data.id")
    calls = [{"service": "kpi", "path": "/v1/measurements", "body": {"items": items}}] if items else []
    return [*calls, {"service": "kpi", "path": "/v1/lifecycle", "body": {"items": [fact]}}]


def _valid_fact(fact: dict[str, Any], entity_field: str) -> None:
    """KPI's own rules for a lifecycle fact (services.kpi.schemas); Invalid naming the webhook's `data.<field>`."""
    try:
        LifecycleIn.model_validate({"items": [fact]})
    except ValidationError as exc:
        errors = []
        for e in exc.errors():
            loc = [str(p) for p in e["loc"][2:]]  # past ("items", 0)
            name = entity_field if loc[:1] == ["entity_id"] else "data." + (loc[-1] if loc else "")
            errors.append(FieldError(name, e["msg"].removeprefix("Value error, "), "invalid"))
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None


def _coordinates(data: dict[str, Any]) -> dict[str, Any]:
    return {c: data[c] for c in COORDINATES if data.get(c) is not None}


def _valid(model: type[M], body: dict[str, Any]) -> M:
    """`body` validated by `model` (an absent field as absent, not as null); Invalid naming `data.<field>`."""
    try:
        return model.model_validate({k: v for k, v in body.items() if v is not None})
    except ValidationError as exc:
        errors = [
            FieldError(
                ".".join(["data", *(str(p) for p in e["loc"])]),
                e["msg"].removeprefix("Value error, "),
                "missing" if e["type"] == "missing" else "invalid",
            )
            for e in exc.errors()
        ]
        raise Invalid("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None


def _iso(t: dt.datetime) -> str:
    """An instant as ISO 8601, UTC written as Z: what KPI reads."""
    text = t.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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
