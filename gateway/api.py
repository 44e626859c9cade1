"""The gateway's own routes: API key management (admin), webhook ingress, delivery status.

The caller of a `/gateway/v1` route has been admitted by gateway.guard before FastAPI
read anything (authenticated, allowed by the policy as service `gateway`, rate-limited);
`authorized` hands the route that principal. Every route declares its answer model and
the problems it can answer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select

from gateway import audit as trail
from gateway import keys, webhooks
from gateway.access import RateLimited, admit
from gateway.models import WebhookDelivery
from gateway.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyList, ApiKeyOut, DeliveryList, DeliveryOut, WebhookAccepted
from gateway.state import Gateway, gateway_of
from shared import audit
from shared.audit import EntryList
from shared.db import utcnow
from shared.errors import FieldError, Forbidden
from shared.http import JsonRoute
from shared.identity import Principal, act_for
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, instant, page_of


async def authorized(request: Request) -> Principal:
    """The caller of a /gateway/v1 route, as gateway.guard admitted it (admitted here only if the app
    runs without the guard)."""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        h = request.headers
        path = request.url.path[len("/gateway") :]
        principal = await admit(
            gateway_of(request), h.get("authorization"), h.get("x-api-key"), "gateway", request.method, path
        )
    act_for(principal, request)  # the author of what the route changes (its audit entries)
    return principal


router = APIRouter(prefix="/gateway/v1", tags=["gateway"], dependencies=[Depends(authorized)], route_class=JsonRoute)


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Issue an API key (the secret is in this answer only)",
    responses=problems(413, 429),
)
async def create_api_key(body: ApiKeyIn, request: Request, p: Principal = Depends(authorized)) -> ApiKeyCreated:
    if not p.delegates(body.scopes):
        # A key reaches what its scopes allow; a scoped admin must not mint one that reaches further.
        raise Forbidden(
            f"A key must be scoped at least as narrowly as you are ({', '.join(sorted(p.scopes))}); "
            f"these scopes ({', '.join(sorted(body.scopes)) or 'none'}) reach rows yours do not.",
            errors=[FieldError("scopes", "wider than your own scopes", "forbidden")],
        )
    row, secret = await keys.create(
        gateway_of(request).db,
        name=body.name,
        roles=body.roles,
        scopes=body.scopes,
        expires_at=body.expires_at,
        created_by=p.subject,
    )
    return ApiKeyCreated(**ApiKeyOut.of(row, utcnow()).model_dump(), key=secret)


@router.get(
    "/api-keys", response_model=ApiKeyList, summary="List API keys (never their secrets)", responses=problems(429)
)
async def list_api_keys(
    request: Request,
    include_revoked: bool = False,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> ApiKeyList:
    after = decode_cursor(cursor, instant, str)
    rows = await keys.list_keys(gateway_of(request).db, include_revoked=include_revoked, limit=limit, after=after)
    page, next_cursor = page_of(rows, limit, lambda r: (r.created_at.isoformat(), r.id))
    now = utcnow()
    return ApiKeyList(items=[ApiKeyOut.of(r, now) for r in page], next_cursor=next_cursor)


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut, summary="One API key", responses=problems(404, 429))
async def get_api_key(key_id: str, request: Request) -> ApiKeyOut:
    return ApiKeyOut.of(await keys.get(gateway_of(request).db, key_id), utcnow())


@router.delete(
    "/api-keys/{key_id}",
    status_code=204,
    response_class=Response,
    summary="Revoke an API key (refused from its next request)",
    responses=problems(404, 429),
)
async def revoke_api_key(key_id: str, request: Request) -> Response:
    await keys.revoke(gateway_of(request).db, key_id)
    return Response(status_code=204)


@router.get(
    "/webhook-deliveries",
    response_model=DeliveryList,
    summary="Recorded webhook deliveries and their forwarding state",
    responses=problems(429),
)
async def list_deliveries(
    request: Request,
    status: str | None = Query(None, pattern="^(pending|delivered|rejected|dead)$"),
    source: str | None = None,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> DeliveryList:
    q = select(WebhookDelivery).order_by(WebhookDelivery.received_at.desc(), WebhookDelivery.id.desc())
    if status:
        q = q.where(WebhookDelivery.status == status)
    if source:
        q = q.where(WebhookDelivery.source == source)
    after = decode_cursor(cursor, instant, str)
    if after:
        at = after[0]
        q = q.where(
            (WebhookDelivery.received_at < at) | ((WebhookDelivery.received_at == at) & (WebhookDelivery.id < after[1]))
        )
    async with gateway_of(request).db.transaction(readonly=True) as s:
        rows = list((await s.scalars(q.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r.received_at.isoformat(), r.id))
    return DeliveryList(items=[DeliveryOut.of(r) for r in page], next_cursor=next_cursor)


@router.get(
    "/audit",
    response_model=EntryList,
    responses={**problems(429, 503), **audit.ANSWERS},
    summary="The whole suite's audit trail (every service's and the gateway's), newest first",
)
async def suite_audit(
    request: Request,
    service: trail.Source | None = None,
    entity: str | None = Query(None, max_length=100),
    entity_id: str | None = Query(None, max_length=200),
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=200, description="a prefix of the action, e.g. budget.commitment"),
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
    format: Literal["json", "csv"] = "json",
    p: Principal = Depends(authorized),
) -> Response | EntryList:
    if not p.is_admin:
        raise Forbidden("The audit trail is for admins.")
    sources = [service] if service else list(trail.SOURCES)
    filters = trail.Filters(entity, entity_id, actor, action, since, until)
    result = await trail.page(gateway_of(request), p, sources, filters, limit, cursor)
    return audit.answer(request, result, format, "pitcrew-audit.csv")


webhook_router = APIRouter(tags=["webhooks"])


def _header(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": False, "schema": {"type": "string"}, "description": description}


_WEBHOOK_DOC = {
    "description": "Sign with Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`) or with "
    "the X-Pitcrew-* headers; either way the signature covers the delivery id, the timestamp and the raw body. "
    "A payload the owning service would refuse is a 422 naming the field (`data.time`, `data.amount`, ...).",
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {"type": {"type": "string", "example": "invoice.posted"}, "data": {"type": "object"}},
                }
            }
        },
    },
    "parameters": [
        _header(webhooks.SW_ID_HEADER, "Standard Webhooks: the delivery's unique id (a repeat is a duplicate)."),
        _header(webhooks.SW_TIMESTAMP_HEADER, "Standard Webhooks: unix seconds; refused when over 5 minutes off."),
        _header(
            webhooks.SW_SIGNATURE_HEADER,
            'Standard Webhooks: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{raw body}"> '
            "(several, space-separated, while a secret is rotated).",
        ),
        _header(webhooks.DELIVERY_HEADER, "Unique per delivery; a repeat answers 200 with duplicate=true."),
        _header(webhooks.TIMESTAMP_HEADER, "Unix seconds; refused when more than 5 minutes off."),
        _header(
            webhooks.SIGNATURE_HEADER,
            'sha256=<hex HMAC-SHA256 of "{delivery}.{timestamp}.{raw body}"> with the source\'s secret.',
        ),
    ],
}


@webhook_router.post(
    "/webhooks/{source}",
    status_code=202,
    response_model=WebhookAccepted,
    openapi_extra=_WEBHOOK_DOC,
    summary="Signed ERP/CRM webhook ingress",
    responses={
        200: {"model": WebhookAccepted, "description": "A delivery id seen before: nothing was done"},
        **problems(404, 413, 429),
    },
)
async def receive_webhook(source: str, request: Request, gw: Gateway = Depends(gateway_of)) -> JSONResponse:
    s = gw.settings
    # Everything the headers can prove is checked before a byte of the body is read.
    signed = webhooks.signed_headers(
        request.headers, s.webhook_secrets, source, tolerance_seconds=s.webhook_tolerance_seconds
    )
    body = await request.body()  # bounded by gateway.guard (webhook_max_body_bytes: 413 beyond)
    webhooks.verify(s.webhook_secrets[source], signed, body)
    retry_after = await gw.limiter.check("webhook", f"webhook:{source}")
    if retry_after is not None:
        raise RateLimited(f"{source} webhook", gw.limiter.describe("webhook"), retry_after)
    delivery_id = signed.delivery_id
    duplicate = {"delivery_id": delivery_id, "status": "duplicate", "duplicate": True}
    async with gw.db.transaction(readonly=True) as session:
        seen = await session.scalar(
            select(WebhookDelivery.id).where(
                WebhookDelivery.source == source, WebhookDelivery.delivery_id == delivery_id
            )
        )
    if seen is not None:
        return JSONResponse(duplicate, status_code=200)
    event_type, data = webhooks.parse(body)
    calls = webhooks.translate(source, event_type, data)
    _row, new = await webhooks.record(gw.db, source, delivery_id, event_type, {"type": event_type, "data": data}, calls)
    if not new:  # a concurrent delivery with the same id won the insert
        return JSONResponse(duplicate, status_code=200)
    gw.forwarder.kick()
    return JSONResponse({"delivery_id": delivery_id, "status": "accepted", "duplicate": False}, status_code=202)
