"""Bottom-up requests: a line owner asks for money per line and month of a plan (next year's, a draft
or active), with a justification. The request waits for the workflow's approval: it publishes
`budget.request.submitted`, the workflow starts the matching definition (shipped: `budget-request`)
and its `workflow.instance.approved|rejected|cancelled` about the request decide it here.

Approval posts each item as an allocation through the ledger's normal posting (`allocations.allocate`:
the balances, `budget.allocation.posted` and the audit entries as for any allocation), as the submitter
with the scopes they had, so a line moved out of their scope since is refused then too. If the ledger
refuses the posting (a closed plan or month, a line out of scope) nothing is posted and the request is
`failed` with the reason; a rejection keeps the approver's comment. Every step is in `history`.

Scopes: the submitter must be allowed to change every line asked for (checked as the line is at
submission, and again at approval); a scoped caller sees only requests whose lines it may all see.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import insert, select, update

from services.budget import allocations, events, planning_schemas
from services.budget.lines import DIMENSIONS, get_line, scopes_refuse
from services.budget.models import budget_request_items, budget_requests, lines
from services.budget.periods import check_period
from services.budget.plans import get_plan
from services.budget.postings import Postings, Raced, new_id
from shared.db import utcnow
from shared.errors import Conflict, DomainError, Invalid, NotFound
from shared.identity import Principal
from shared.money import fmt, from_minor, to_minor
from shared.uow import UnitOfWork

Outcome = Literal["approved", "rejected", "cancelled"]
PENDING = "pending_approval"


def _step(at: dt.datetime, actor: str, action: str, comment: str | None = None) -> dict[str, Any]:
    return {"at": at.isoformat(), "actor": actor, "action": action, "comment": comment}


async def submit(uow: UnitOfWork, who: Principal, *, body: planning_schemas.RequestIn) -> dict[str, Any]:
    """Check every item (a line of the plan the caller may change, a month of the plan, an amount above
    zero, each line and month once), keep the request and publish budget.request.submitted."""
    try:
        p = await get_plan(uow, body.plan_id)
    except NotFound as exc:
        raise Invalid.on("plan_id", f"no plan {body.plan_id!r}", "not_found") from exc
    if p.status == "closed":
        raise Conflict(f"Plan {p.name!r} is closed; it takes no more requests.")
    if body.currency != p.currency:
        raise Invalid.on("currency", f"must be the plan currency {p.currency}")
    checked: dict[tuple[str, str], int] = {}
    rows: dict[str, Any] = {}
    for i, item in enumerate(body.items):
        at = f"items[{i}]"
        ln = await get_line(uow, None, item.line_id, f"{at}.line_id")
        if ln.plan_id != p.id:
            raise Invalid.on(f"{at}.line_id", f"line {ln.code!r} is in another plan")
        if not who.may_change(ln.dimensions, ln.dimensions):
            raise scopes_refuse(who, f"line {ln.code!r}")
        period = check_period(p, item.period, f"{at}.period")
        minor = to_minor(item.amount, p.currency, f"{at}.amount")
        if minor <= 0:
            raise Invalid.on(f"{at}.amount", "must be more than zero")
        if (ln.id, period) in checked:
            raise Invalid.on(f"{at}.period", f"line {ln.code!r} and {period} are asked for twice", "duplicate")
        checked[(ln.id, period)] = minor
        rows[ln.id] = ln
    rid, now = new_id(), utcnow()
    total = sum(checked.values())
    await uow.execute(
        insert(budget_requests).values(
            id=rid,
            plan_id=p.id,
            status=PENDING,
            justification=body.justification,
            currency=p.currency,
            total_minor=total,
            requested_by=who.subject,
            requester_scopes=sorted(who.scopes),
            history=[_step(now, who.subject, "submitted")],
            created_at=now,
        )
    )
    await uow.execute(
        insert(budget_request_items),
        [dict(request_id=rid, line_id=k[0], period=k[1], amount_minor=v) for k, v in sorted(checked.items())],
    )
    dims = [dict(r.dimensions or {}) for r in rows.values()]
    shared = {d: dims[0].get(d) if all(x.get(d) == dims[0].get(d) for x in dims) else None for d in DIMENSIONS}
    data = events.BudgetRequestSubmitted(
        request_id=rid,
        plan_id=p.id,
        plan_name=p.name,
        fiscal_year=p.fiscal_year,
        currency=p.currency,
        total=fmt(total, p.currency),
        justification=body.justification,
        requested_by=who.subject,
        line_codes=sorted({r.code for r in rows.values()}),
        items=[
            events.BudgetRequestItem(line_id=k[0], line_code=rows[k[0]].code, period=k[1], amount=fmt(v, p.currency))
            for k, v in sorted(checked.items())
        ],
        dimensions=shared,
    )
    await uow.publish(events.REQUEST_SUBMITTED, rid, data)
    return await get_request(uow, who, request_id=rid)


async def _items(uow: UnitOfWork, request_ids: list[str]) -> dict[str, list[Any]]:
    q = (
        select(budget_request_items, lines.c.code, lines.c.dimensions)
        .join(lines, lines.c.id == budget_request_items.c.line_id)
        .where(budget_request_items.c.request_id.in_(request_ids))
        .order_by(lines.c.code, budget_request_items.c.period)
    )
    out: dict[str, list[Any]] = {rid: [] for rid in request_ids}
    for r in (await uow.execute(q)).all():
        out[r.request_id].append(r)
    return out


async def _fiscal_years(uow: UnitOfWork, plan_ids: set[str]) -> dict[str, int]:
    return {pid: (await get_plan(uow, pid)).fiscal_year for pid in plan_ids}


def request_view(r: Any, items: list[Any], fiscal_year: int) -> dict[str, Any]:
    """A request as the API shows it (`planning_schemas.RequestOut`)."""
    return {
        "id": r.id,
        "plan_id": r.plan_id,
        "fiscal_year": fiscal_year,
        "status": r.status,
        "justification": r.justification,
        "currency": r.currency,
        "total": fmt(r.total_minor, r.currency),
        "requested_by": r.requested_by,
        "instance_id": r.instance_id,
        "decided_by": r.decided_by,
        "decided_at": r.decided_at,
        "reason": r.reason,
        "created_at": r.created_at,
        "items": [
            {
                "line_id": i.line_id,
                "line_code": i.code,
                "period": i.period,
                "amount": fmt(i.amount_minor, r.currency),
                "entry_id": i.entry_id,
            }
            for i in items
        ],
        "history": list(r.history),
    }


async def get_request(uow: UnitOfWork, who: Principal, *, request_id: str) -> dict[str, Any]:
    r = (await uow.execute(select(budget_requests).where(budget_requests.c.id == request_id))).first()
    items = (await _items(uow, [request_id]))[request_id] if r is not None else []
    if r is None or not all(who.may_see(i.dimensions) for i in items):
        raise NotFound(f"No budget request {request_id}.")
    return request_view(r, items, (await get_plan(uow, r.plan_id)).fiscal_year)


async def list_requests(
    uow: UnitOfWork, who: Principal, *, plan_id: str | None, status: str | None, mine: bool, limit: int
) -> list[dict[str, Any]]:
    """Newest first, those whose lines the caller may all see (`mine`: only the caller's own)."""
    q = select(budget_requests).order_by(budget_requests.c.created_at.desc(), budget_requests.c.id)
    if plan_id is not None:
        q = q.where(budget_requests.c.plan_id == plan_id)
    if status is not None:
        q = q.where(budget_requests.c.status == status)
    if mine:
        q = q.where(budget_requests.c.requested_by == who.subject)
    out: list[dict[str, Any]] = []
    rows = (await uow.execute(q)).all()
    years = await _fiscal_years(uow, {r.plan_id for r in rows})
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        items = await _items(uow, [r.id for r in chunk])
        for r in chunk:
            if all(who.may_see(i.dimensions) for i in items[r.id]):
                out.append(request_view(r, items[r.id], years[r.plan_id]))
            if len(out) >= limit:
                return out
    return out


async def decided(
    uow: UnitOfWork,
    who: Principal,
    *,
    postings: Postings,
    request_id: str,
    outcome: Outcome,
    instance_id: str,
    actor: str | None,
    comment: str | None,
) -> None:
    """The workflow decided: approval posts the items as allocations (all or none: a refusal leaves the
    request `failed` with its reason), rejection keeps the comment, a cancellation ends it. A request
    decided already (a redelivery) changes nothing."""
    q = select(budget_requests).where(budget_requests.c.id == request_id).with_for_update()
    r = (await uow.execute(q)).first()
    if r is None:
        raise NotFound(f"No budget request {request_id}: the decision cannot apply.")
    if r.status != PENDING:
        return
    now = utcnow()
    by = actor or who.subject
    status: str = outcome
    reason = comment
    if outcome == "approved":
        try:
            async with uow.begin_nested():  # a refusal undoes every allocation the approval posted
                await _allocate(uow, postings, r, request_id)
        except Raced:
            raise  # a race, not a refusal: redelivered and decided again
        except DomainError as refused:
            status, reason = "failed", refused.detail
    elif outcome == "rejected" and not comment:
        reason = "rejected without a comment"
    steps = [*r.history, _step(now, by, outcome, comment)]
    if status == "failed":
        steps.append(_step(now, "service:budget", "failed", reason))
    await uow.execute(
        update(budget_requests)
        .where(budget_requests.c.id == request_id)
        .values(
            status=status,
            instance_id=instance_id,
            decided_by=by,
            decided_at=now,
            reason=reason if outcome != "approved" or status == "failed" else None,
            history=steps,
        )
    )
    await uow.audit("budget_request", request_id, action=f"budget.request.{status}", after={"by": by, "reason": reason})


async def _allocate(uow: UnitOfWork, postings: Postings, r: Any, request_id: str) -> None:
    """Each item as an allocation, posted as the submitter with the scopes they had (checked again now)."""
    submitter = Principal(subject=r.requested_by, roles=frozenset({"mops"}), scopes=frozenset(r.requester_scopes))
    items = (await _items(uow, [request_id]))[request_id]
    for i in items:
        view = await allocations.allocate(
            uow,
            submitter,
            postings=postings,
            line_id=i.line_id,
            period=i.period,
            amount=Decimal(from_minor(i.amount_minor, r.currency)),
            currency=r.currency,
            memo=f"budget request {request_id}",
            external_ref=f"request:{request_id}",
        )
        key = (
            budget_request_items.c.request_id == request_id,
            budget_request_items.c.line_id == i.line_id,
            budget_request_items.c.period == i.period,
        )
        await uow.execute(update(budget_request_items).where(*key).values(entry_id=view["id"]))
