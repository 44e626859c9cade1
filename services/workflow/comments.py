"""Comments on a request, with the users they mention (`@user`), and an assignee's questions on a
deliverable (a comment tied to it that mentions the requester). Each is a history row on the
request's instance and a `workflow.request.commented` event (a notifier tells the mentioned)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select

from services.workflow import deliverables, events, store, work_requests
from services.workflow.instances import new_id
from services.workflow.models import request_comments
from services.workflow.request_schemas import RequestCommentOut
from shared.db import utcnow
from shared.errors import Forbidden
from shared.identity import Principal
from shared.uow import UnitOfWork

MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9][A-Za-z0-9._-]{0,199})")
MAX_MENTIONS = 20


def mentions(text: str, *also: str) -> list[str]:
    """The users a text mentions, in order, each once (at most MAX_MENTIONS), after those in `also`."""
    out: list[str] = []
    for name in (*also, *(m.rstrip(".") for m in MENTION.findall(text))):
        if name and name not in out:
            out.append(name)
    return out[:MAX_MENTIONS]


async def add(uow: UnitOfWork, who: Principal, *, ref: str, body: str) -> RequestCommentOut:
    request = await work_requests.visible_row(uow, who, ref=ref)
    return await write(uow, who, request=request, body=body, deliverable_id=None, mention=())


async def write(
    uow: UnitOfWork,
    who: Principal,
    *,
    request: Mapping[Any, Any],
    body: str,
    deliverable_id: str | None,
    mention: tuple[str, ...],
) -> RequestCommentOut:
    row = {
        "id": new_id(),
        "request_id": request["id"],
        "deliverable_id": deliverable_id,
        "author": who.subject,
        "body": body,
        "mentions": mentions(body, *mention),
        "created_at": utcnow(),
    }
    await uow.execute(insert(request_comments).values(**row))
    action = "deliverable_question" if deliverable_id else "commented"
    detail = {"comment_id": row["id"], "mentions": row["mentions"], "deliverable_id": deliverable_id}
    await store.record(uow, request["instance_id"], who.subject, action, comment=body, detail=detail)
    data = events.WorkflowRequestComment(
        request_id=request["id"],
        number=request["number"],
        comment_id=row["id"],
        deliverable_id=deliverable_id,
        author=who.subject,
        body=body,
        mentions=row["mentions"],
        created_at=row["created_at"],
    )
    await uow.publish(events.REQUEST_COMMENTED, request["id"], data, correlation_id=who.request_id)
    return RequestCommentOut.model_validate(row)


async def of_request(uow: UnitOfWork, request_id: str) -> list[RequestCommentOut]:
    q = select(request_comments).where(request_comments.c.request_id == request_id)
    rows = (await uow.execute(q.order_by(request_comments.c.created_at, request_comments.c.id))).mappings().all()
    return [RequestCommentOut.model_validate(dict(r)) for r in rows]


async def ask(uow: UnitOfWork, who: Principal, *, deliverable_id: str, body: str) -> RequestCommentOut:
    """The assignee's question on a deliverable: a comment on its request mentioning the requester."""
    row = await deliverables.visible(uow, who, deliverable_id)
    if not deliverables.is_assignee(row, who):
        raise Forbidden("Only the assignee (the owner, or the supplier's principals) asks about a deliverable.")
    request = {"id": row["request_id"], "number": row["number"], "instance_id": row["instance_id"]}
    return await write(uow, who, request=request, body=body, deliverable_id=row["id"], mention=(row["requester"],))
