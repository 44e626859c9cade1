"""The gateway's own routes: API key management (admin), webhook ingress, delivery status."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.exceptions import HTTPException

from gateway import keys, webhooks
from gateway.models import WebhookDelivery
from gateway.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyList, ApiKeyOut, DeliveryList, DeliveryOut, WebhookAccepted
from shared.db import utcnow
from shared.errors import FieldError, Forbidden
from shared.http import JsonRoute
from shared.identity import Principal
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, instant, page_of

if TYPE_CHECKING:
    from gateway.main import Gateway


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway_ref["gateway"]


async def authorized(request: Request) -> Principal:
    """The caller of a /gateway/v1 route: authenticated, allowed by the policy (service `gateway`), rate-limited."""
    gw = gateway_of(request)
    principal = await gw.auth.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    path = request.url.path[len("/gateway") :]
    if not gw.policy.allows(principal.roles, "gateway", request.method, path):
        raise Forbidden(
            f"Your roles ({', '.join(sorted(principal.roles)) or 'none'}) may not "
            f"{request.method} {request.url.path}; managing the gateway is for admins."
        )
    route_class = "read" if request.method in ("GET", "HEAD", "OPTIONS") else "write"
    retry_after = await gw.limiter.check(route_class, principal.subject)
    if retry_after is not None:
        raise HTTPException(
            429,
            f"Rate limit for {route_class} requests exceeded; retry in {int(retry_after)} s.",
            headers={"Retry-After": str(int(retry_after))},
        )
    return principal


router = APIRouter(prefix="/gateway/v1", tags=["gateway"], dependencies=[Depends(authorized)], route_class=JsonRoute)


@router.post(
    "/api-keys",
    status_code=201,
    response_model=ApiKeyCreated,
    summary="Issue an API key (the secret is in this answer only)",
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


@router.get("/api-keys", response_model=ApiKeyList, summary="List API keys (never their secrets)")
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


@router.get("/api-keys/{key_id}", response_model=ApiKeyOut, summary="One API key")
async def get_api_key(key_id: str, request: Request) -> ApiKeyOut:
    return ApiKeyOut.of(await keys.get(gateway_of(request).db, key_id), utcnow())


@router.delete("/api-keys/{key_id}", status_code=204, summary="Revoke an API key (refused from its next request)")
async def revoke_api_key(key_id: str, request: Request) -> Response:
    await keys.revoke(gateway_of(request).db, key_id)
    return Response(status_code=204)


@router.get(
    "/webhook-deliveries", response_model=DeliveryList, summary="Recorded webhook deliveries and their forwarding state"
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


webhook_router = APIRouter(tags=["webhooks"])

_WEBHOOK_BODY = {
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
        {
            "name": webhooks.TIMESTAMP_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Unix seconds; refused when more than 5 minutes off.",
        },
        {
            "name": webhooks.DELIVERY_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": "Unique per delivery; a repeat answers 200 with duplicate=true and does nothing.",
        },
        {
            "name": webhooks.SIGNATURE_HEADER,
            "in": "header",
            "required": True,
            "schema": {"type": "string"},
            "description": 'sha256=<hex HMAC-SHA256 of "{timestamp}.{raw body}"> with the source\'s secret.',
        },
    ],
}


@webhook_router.post(
    "/webhooks/{source}",
    status_code=202,
    response_model=WebhookAccepted,
    openapi_extra=_WEBHOOK_BODY,
    summary="Signed ERP/CRM webhook ingress",
)
async def receive_webhook(source: str, request: Request) -> JSONResponse:
    gw = gateway_of(request)
    s = gw.settings
    body = await request.body()
    h = request.headers
    delivery_id = h.get(webhooks.DELIVERY_HEADER)
    webhooks.verify(
        s.webhook_secrets,
        source,
        body,
        h.get(webhooks.TIMESTAMP_HEADER),
        delivery_id,
        h.get(webhooks.SIGNATURE_HEADER),
        tolerance_seconds=s.webhook_tolerance_seconds,
    )
    retry_after = await gw.limiter.check("webhook", f"webhook:{source}")
    if retry_after is not None:
        raise HTTPException(
            429,
            f"Rate limit for {source} webhooks exceeded; retry in {int(retry_after)} s.",
            headers={"Retry-After": str(int(retry_after))},
        )
    assert delivery_id is not None  # verify() refused it otherwise
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
