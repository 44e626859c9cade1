"""The in-app inbox: a person's in-app notifications, newest first, and marking one read."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from services.notify import schemas
from services.notify.models import Notification
from shared.db import utcnow
from shared.errors import NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, instant, page_of
from shared.uow import UnitOfWork


def item(n: Notification) -> schemas.InboxItem:
    return schemas.InboxItem(
        id=n.id,
        kind=n.kind,
        title=n.title,
        facts=[[str(a), str(b)] for a, b in n.facts],
        link=n.link,
        repeats=n.repeats,
        created_at=n.created_at,
        read_at=n.read_at,
    )


def _text(part: Any) -> str:
    if not isinstance(part, str):
        raise TypeError("not a string")
    return part


async def list_inbox(
    uow: UnitOfWork, who: Principal, *, unread: bool, limit: int, cursor: str | None
) -> schemas.InboxPage:
    n = Notification
    query = (
        select(n).where(n.person_id == who.subject, n.channel == "in_app").order_by(n.created_at.desc(), n.id.desc())
    )
    if unread:
        query = query.where(n.read_at.is_(None))
    key = decode_cursor(cursor, instant, _text)
    if key:
        at, last = key
        query = query.where((n.created_at < at) | ((n.created_at == at) & (n.id < last)))
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r.created_at.isoformat(), r.id))
    return schemas.InboxPage(items=[item(r) for r in page], next_cursor=next_cursor)


async def mark_read(uow: UnitOfWork, who: Principal, *, notification_id: str) -> schemas.InboxItem:
    row = await uow.get(Notification, notification_id)
    if row is None or row.person_id != who.subject or row.channel != "in_app":
        raise NotFound(f"No notification {notification_id!r} in your inbox.")
    if row.read_at is None:
        row.read_at = utcnow()
        await uow.flush()
    return item(row)
