"""Request and response models of the gateway's own API."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from gateway.models import ApiKey, WebhookDelivery
from shared.bounds import Instant


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["erp-sync"])
    roles: list[str] = Field(min_length=1, examples=[["partner"]])
    scopes: list[str] = Field(default_factory=list, examples=[["region:EMEA"]])
    expires_at: Instant | None = Field(default=None, description="With a UTC offset; null for no expiry.")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(
        description="The first characters of the key, to recognise it; the key itself is never shown again."
    )
    roles: list[str]
    scopes: list[str]
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    status: str

    @classmethod
    def of(cls, row: ApiKey, now: dt.datetime) -> ApiKeyOut:
        status = "revoked" if row.revoked_at else "expired" if row.expires_at and row.expires_at <= now else "active"
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            roles=row.roles,
            scopes=row.scopes,
            created_by=row.created_by,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
            status=status,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret, shown only in this answer: send it as X-API-Key.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyOut]
    next_cursor: str | None = None


class DeliveryOut(BaseModel):
    id: str
    source: str
    delivery_id: str
    event_type: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    received_at: dt.datetime
    delivered_at: dt.datetime | None
    next_attempt_at: dt.datetime
    requests: list[dict]

    @classmethod
    def of(cls, row: WebhookDelivery) -> DeliveryOut:
        return cls(
            id=row.id,
            source=row.source,
            delivery_id=row.delivery_id,
            event_type=row.event_type,
            status=row.status,
            attempts=row.attempts,
            last_status=row.last_status,
            last_error=row.last_error,
            received_at=row.received_at,
            delivered_at=row.delivered_at,
            next_attempt_at=row.next_attempt_at,
            requests=row.requests,
        )


class DeliveryList(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


class WebhookAccepted(BaseModel):
    delivery_id: str
    status: str = Field(description="`accepted`: recorded and being forwarded.")
    duplicate: bool = False
