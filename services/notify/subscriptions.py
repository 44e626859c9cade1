"""Partner subscriptions: a URL, the event types it wants (globs such as `budget.commitment.*`), and a
secret shown once; each matching event becomes a delivery row (`hooks` sends them), and partners
read each delivery's attempts and ask for one or a time range again.
"""

from __future__ import annotations

import base64
import fnmatch
import secrets
import uuid
from typing import Any

from sqlalchemy import insert, select, update

from services.notify import schemas, urls
from services.notify.models import Delivery, DeliveryAttempt, Subscription
from shared.db import utcnow
from shared.errors import NotFound
from shared.events import Envelope
from shared.identity import Principal
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork


def matches(pattern: str, subject: str) -> bool:
    """Segment by segment: `*` (or any fnmatch glob) within one segment, `>` or `**` for the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, seg in enumerate(p):
        if seg in (">", "**"):
            return len(s) > i
        if i >= len(s) or not fnmatch.fnmatchcase(s[i], seg):
            return False
    return len(p) == len(s)


def record(sub: Subscription) -> schemas.SubscriptionOut:
    return schemas.SubscriptionOut(
        id=sub.id,
        owner=sub.owner,
        url=sub.url,
        event_types=list(sub.event_types),
        description=sub.description,
        status=sub.status,
        disabled_reason=sub.disabled_reason,
        created_at=sub.created_at,
        disabled_at=sub.disabled_at,
    )


async def create(
    uow: UnitOfWork, who: Principal, *, body: schemas.SubscriptionIn, allow_private: bool
) -> schemas.SubscriptionCreated:
    await urls.check(body.url, "url", allow_private=allow_private)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    sub = Subscription(
        id=str(uuid.uuid4()),
        owner=who.subject,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        secret=secret,
        status="active",
        created_at=utcnow(),
    )
    uow.add(sub)
    await uow.flush()
    await uow.audit(
        "subscription", sub.id, action="notify.subscription.created", after=record(sub).model_dump(mode="json")
    )
    return schemas.SubscriptionCreated(**record(sub).model_dump(), secret=secret)


async def get(uow: UnitOfWork, who: Principal, subscription_id: str) -> Subscription:
    sub = await uow.get(Subscription, subscription_id)
    if sub is None or (sub.owner != who.subject and not who.is_admin):
        raise NotFound(f"No subscription {subscription_id!r} of yours.")
    return sub


def _text(part: Any) -> str:
    if not isinstance(part, str):
        raise TypeError("not a string")
    return part


async def list_mine(uow: UnitOfWork, who: Principal, *, limit: int, cursor: str | None) -> schemas.SubscriptionPage:
    query = select(Subscription).order_by(Subscription.id)
    if not who.is_admin:
        query = query.where(Subscription.owner == who.subject)
    key = decode_cursor(cursor, _text)
    if key:
        query = query.where(Subscription.id > key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r.id,))
    return schemas.SubscriptionPage(items=[record(r) for r in page], next_cursor=next_cursor)


async def delete(uow: UnitOfWork, who: Principal, subscription_id: str) -> None:
    sub = await get(uow, who, subscription_id)
    before = record(sub).model_dump(mode="json")
    await uow.session.delete(sub)
    await uow.flush()
    await uow.audit("subscription", subscription_id, action="notify.subscription.deleted", before=before)


async def deliveries(
    uow: UnitOfWork, who: Principal, subscription_id: str, *, limit: int, cursor: str | None
) -> schemas.DeliveryPage:
    await get(uow, who, subscription_id)
    query = select(Delivery).where(Delivery.subscription_id == subscription_id).order_by(Delivery.seq.desc())
    key = decode_cursor(cursor, int)
    if key:
        query = query.where(Delivery.seq < key[0])
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r.seq,))
    attempts: dict[str, list[schemas.AttemptOut]] = {r.id: [] for r in page}
    if page:
        for a in (
            await uow.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
                .order_by(DeliveryAttempt.seq)
            )
        ).all():
            attempts[a.delivery_id].append(
                schemas.AttemptOut(at=a.at, status_code=a.status_code, latency_ms=a.latency_ms, error=a.error)
            )
    items = [
        schemas.DeliveryOut(
            id=r.id,
            event_id=r.event_id,
            event_type=r.event_type,
            subject_id=r.subject_id,
            status=r.status,
            attempts=r.attempts,
            last_status=r.last_status,
            last_error=r.last_error,
            created_at=r.created_at,
            delivered_at=r.delivered_at,
            next_attempt_at=r.next_attempt_at if r.status == "pending" else None,
            log=attempts[r.id],
        )
        for r in page
    ]
    return schemas.DeliveryPage(items=items, next_cursor=next_cursor)


async def redeliver(
    uow: UnitOfWork, who: Principal, subscription_id: str, *, body: schemas.RedeliverIn
) -> schemas.Redelivered:
    """Send one delivery, or every delivery created in [from, to), again (in their order); a disabled
    subscription is enabled again."""
    sub = await get(uow, who, subscription_id)
    d = Delivery
    query = update(d).where(d.subscription_id == sub.id)
    if body.delivery_id is not None:
        if await uow.scalar(select(d.id).where(d.id == body.delivery_id, d.subscription_id == sub.id)) is None:
            raise NotFound(f"No delivery {body.delivery_id!r} of subscription {sub.id!r}.")
        query = query.where(d.id == body.delivery_id)
    else:
        assert body.from_ is not None and body.to is not None
        query = query.where(d.created_at >= body.from_, d.created_at < body.to)
    result = await uow.execute(
        query.values(status="pending", next_attempt_at=utcnow(), first_failed_at=None, last_error=None)
    )
    if sub.status != "active":
        sub.status, sub.disabled_at, sub.disabled_reason = "active", None, None
    await uow.flush()
    count = int(getattr(result, "rowcount", 0) or 0)
    await uow.audit("subscription", sub.id, action="notify.subscription.redelivered", after={"deliveries": count})
    return schemas.Redelivered(redelivered=count)


async def fan_out(uow: UnitOfWork, env: Envelope) -> int:
    """A delivery row for each active subscription that wants this event (once per subscription)."""
    subs = (
        await uow.execute(select(Subscription.id, Subscription.event_types).where(Subscription.status == "active"))
    ).all()
    wanted = [s for s in subs if any(matches(p, env.type) for p in s.event_types)]
    if not wanted:
        return 0
    now = utcnow()
    body = env.to_json()
    taken = set(
        (
            await uow.scalars(
                select(Delivery.subscription_id).where(
                    Delivery.event_id == env.id, Delivery.subscription_id.in_([s.id for s in wanted])
                )
            )
        ).all()
    )
    rows = [
        {
            "id": str(uuid.uuid4()),
            "subscription_id": s.id,
            "event_id": env.id,
            "event_type": env.type,
            "subject_id": str(env.subject_id)[:200],
            "payload": body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for s in wanted
        if s.id not in taken
    ]
    if rows:
        await uow.execute(insert(Delivery), rows)
    return len(rows)
