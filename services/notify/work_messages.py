"""What work requests' comments and deliverables say, and to whom.

A comment reaches the people it mentions (never its author). A deliverable's assignment, send-back,
approval and SLA reach its assignee; its delivery, acceptance and start its requester; its
cancellation both (never whoever acted). The assignee is an internal team's owner and the team's
members in the directory, or a supplier's people (the directory's holders of the `supplier` role
scoped `supplier:<id>`, as the workflow knows its principals). The events carry no supplier
address, so when nobody at the supplier is in the directory the request's requester is told
instead, to pass it on. The requester is known from `workflow.request.submitted` (remembered in
`known_requests`); for a request notify never saw, the holders of
`PITCREW_NOTIFY_REQUEST_OWNER_ROLES` (mops) hear in their place.
"""

from __future__ import annotations

from services.notify import events, people
from services.notify.compose import Composer, read
from services.notify.dispatch import Message
from services.notify.models import KnownRequest, Person
from shared.db import utcnow
from shared.events import Envelope
from shared.uow import UnitOfWork

EXCERPT = 280


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """The text on one line, cut at a word near `limit` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0] or flat[:limit]
    return f"{cut}…"


async def remember_request(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.RequestSubmitted, env)
    row = await uow.get(KnownRequest, d.request_id)
    if row is None:
        row = KnownRequest(id=d.request_id, updated_at=utcnow())
        uow.add(row)
    row.number = (d.number or "")[:40] or row.number
    row.title = (d.title or "")[:300] or row.title
    row.requester = (d.requester or "")[:200] or row.requester
    row.updated_at = utcnow()
    await uow.flush()
    return 0


def _request_words(req: KnownRequest | None, number: str | None, request_id: str) -> str:
    """`REQ-2027-000123 Spring campaign` (or as much of it as is known)."""
    label = number or (req.number if req else None) or request_id
    return f"{label} {req.title}" if req and req.title else label


async def _requester(c: Composer, uow: UnitOfWork, req: KnownRequest | None) -> list[Person]:
    if req is not None and req.requester:
        return await people.people(uow, [req.requester])
    return await people.holders(uow, c.request_owner_roles)


async def request_commented(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    d = read(events.RequestCommented, env)
    req = await uow.get(KnownRequest, d.request_id)
    about = _request_words(req, d.number, d.request_id)
    facts = [("Request", about), ("Comment by", d.author or ""), ("Comment", excerpt(d.body))]
    if d.deliverable_id:
        facts.append(("About deliverable", d.deliverable_id))
    to = [p for p in await people.people(uow, d.mentions) if p.id != d.author]
    m = Message(
        "request_commented",
        f"{d.author or 'Someone'} mentioned you on {about}",
        facts,
        c.link(f"/workflow/v1/requests/{d.request_id}"),
    )
    return await c.send(uow, to, m, env)


async def _assignee(c: Composer, uow: UnitOfWork, d: events.Deliverable) -> tuple[list[Person], bool]:
    """Who acts on the deliverable, and whether they are stand-ins (the requester, for an unreachable supplier)."""
    if d.supplier_id:
        found = await people.supplier_people(uow, d.supplier_id)
        if found:
            return found, False
        return await _requester(c, uow, await uow.get(KnownRequest, d.request_id)), True
    to = await people.people(uow, [d.owner or ""])
    if d.team:
        to += await people.team_members(uow, d.team)
    return to, False


def _facts(d: events.Deliverable, about: str) -> list[tuple[str, str]]:
    facts = [("Deliverable", d.name or d.deliverable_id), ("Request", about)]
    who = f"supplier {d.supplier_id}" if d.supplier_id else f"team {d.team}" if d.team else None
    facts.append(("Assigned to", " ".join(x for x in (who, f"(owner {d.owner})" if d.owner else "") if x)))
    if d.due_at:
        facts.append(("Due", d.due_at))
    return facts


# verb -> (kind, title) of what the request's requester hears; the assignee's are `ASSIGNEE`.
REQUESTER = {
    "delivered": ("deliverable_delivered", "Delivered, for your review: {name}"),
    "accepted": ("deliverable_accepted", "Accepted: {name}"),
    "started": ("deliverable_started", "Work started: {name}"),
    "cancelled": ("deliverable_cancelled", "Cancelled: {name}"),
}
ASSIGNEE = {
    "created": ("deliverable_assigned", "New deliverable for you: {name}"),
    "sent_back": ("deliverable_sent_back", "Sent back for rework: {name}"),
    "approved": ("deliverable_approved", "Approved: {name}"),
    "cancelled": ("deliverable_cancelled", "Cancelled: {name}"),
    "sla_warning": ("deliverable_sla_warning", "Deliverable due soon: {name}"),
    "sla_breached": ("deliverable_sla_breached", "Deliverable overdue: {name}"),
}
# Whoever acted knows: not told of their own act (a stand-in still is: they must pass it on).
ACTS = frozenset({"created", "sent_back", "delivered", "accepted", "started", "approved", "cancelled"})


def _about_the_move(verb: str, d: events.Deliverable) -> list[tuple[str, str]]:
    if verb == "delivered":
        return [("Delivered work", d.link or ""), ("Delivered by", d.actor or "")]
    if verb == "sent_back":
        return [("Reason", d.reason or ""), ("Rework round", str(d.rework_rounds or ""))]
    if verb in ("accepted", "started"):
        return [(f"{verb.capitalize()} by", d.actor or "")]
    if verb == "approved":
        facts = [("Approved by", d.actor or "")]
        if d.on_time is not None:
            late = f"no, {d.lateness_business_hours or 0:g} business hours late"
            facts.append(("On time", "yes" if d.on_time else late))
        if d.rework_rounds:
            facts.append(("Rework rounds", str(d.rework_rounds)))
        return facts
    if verb == "cancelled":
        return [("Cancelled by", d.actor or "")] + ([("Reason", d.reason)] if d.reason else [])
    return []


async def deliverable(c: Composer, uow: UnitOfWork, env: Envelope) -> int:
    """One handler for the deliverable events notify tells anyone about (see `route`): the requester
    hears of a delivery and of the assignee taking the work on or starting it; the assignee of its
    assignment, a send-back, an approval and its SLA; both of a cancellation."""
    d = read(events.Deliverable, env)
    verb = env.type.rsplit(".", 1)[-1]
    if verb not in REQUESTER and verb not in ASSIGNEE:
        return 0
    req = await uow.get(KnownRequest, d.request_id)
    about = _request_words(req, d.request_number, d.request_id)
    facts = _facts(d, about) + _about_the_move(verb, d)
    name = d.name or d.deliverable_id
    key: str | None = None
    to: list[Person] = []
    stand_in = False
    if verb in REQUESTER:
        kind, title = REQUESTER[verb]
        to = await _requester(c, uow, req)
    if verb in ASSIGNEE:
        kind, title = ASSIGNEE[verb]
        assignees, stand_in = await _assignee(c, uow, d)
        if stand_in:
            title = f"Pass on to supplier {d.supplier_id}: {title}"
            facts.append(("Why you", "nobody at the supplier is in the directory; please tell them"))
        to += assignees
        if verb == "sla_breached":
            e = d.escalation
            to += await people.people(uow, e.notify) + await people.holders(uow, e.notify)
        if verb == "sla_warning":
            key = f"deliverable_sla_warning:{d.deliverable_id}"  # repeated warnings fold into one
    if verb in ACTS and not stand_in:
        to = [p for p in to if p.id != d.actor]
    m = Message(
        kind, f"{title.format(name=name)} ({about})", facts, c.link(f"/workflow/v1/deliverables/{d.deliverable_id}")
    )
    return await c.send(uow, to, m, env, key=key)
