"""Refusals: a commitment the budget refused when it arrived as an event or an ERP document (a
contract term from the registry, a purchase order). A request made through the API gets its 409 and
its caller decides; a request sent by another system has nobody waiting for the answer, so it is
kept here with its reason (never dead-lettered), published as budget.commitment.refused, listed at
/v1/refusals and retried, once it can fit (the line funded, the line created), by whoever may.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select, update

from services.budget import events, integrations
from services.budget.lines import resolve_line
from services.budget.models import commitments as commitments_table
from services.budget.models import refusals
from services.budget.postings import Postings, new_id
from services.budget.schemas import PurchaseOrderIn
from services.registry.events import RegistryContractTerm
from shared.db import utcnow
from shared.errors import Conflict, DomainError, Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork

Kind = Literal["contract_commitment", "erp_purchase_order"]
CONTRACT: Kind = "contract_commitment"
PURCHASE_ORDER: Kind = "erp_purchase_order"


def fundable(error: DomainError) -> bool:
    """A refusal that funding or creating the line can lift: a shortfall, a line not (yet) there. An ERP
    order refused otherwise (released meanwhile, moved to another plan) is the ERP's to correct: its 409."""
    if isinstance(error, Conflict):
        return "shortfall" in error.extra
    return any(e.field == "budget_line" and e.code == "not_found" for e in error.errors)


def contract_request(term: RegistryContractTerm) -> dict[str, Any]:
    """What a refused contract term keeps about itself (and the retry reads back)."""
    return dict(
        kind=CONTRACT,
        external_ref=integrations.contract_ref(term),
        request=term,
        fiscal_year=term.fiscal_year,
        line_code=term.budget_line_code,
        period=term.period,
        amount=str(term.commit_amount),
        currency=term.currency,
        memo=f"{term.tool_name} contract term {term.term}",
    )


def order_request(order: PurchaseOrderIn) -> dict[str, Any]:
    return dict(
        kind=PURCHASE_ORDER,
        external_ref=order.po_number,
        request=order,
        fiscal_year=order.fiscal_year,
        line_code=order.budget_line,
        period=order.period,
        amount=None if order.amount is None else str(order.amount),
        currency=order.currency,
        memo=order.description,
    )


async def record(
    uow: UnitOfWork,
    who: Principal,
    error: DomainError,
    *,
    kind: Kind,
    external_ref: str,
    request: BaseModel,
    fiscal_year: int | None,
    line_code: str | None,
    period: str | None,
    amount: str | None,
    currency: str | None,
    memo: str | None,
) -> dict[str, Any]:
    """Keep a refused request with its reason and publish budget.commitment.refused. The same request
    refused again (a redelivery, a newer order revision) updates its one refusal."""
    ln = None
    if fiscal_year is not None and line_code:
        try:
            ln = await resolve_line(uow, fiscal_year, line_code)
        except Invalid:
            pass  # no such line (yet): the refusal is about exactly that
    row: dict[str, Any] = dict(
        request=request.model_dump(mode="json"),
        fiscal_year=fiscal_year,
        line_code=line_code,
        plan_id=ln.plan_id if ln is not None else None,
        line_id=ln.id if ln is not None else None,
        dimensions=dict(ln.dimensions) if ln is not None else {},
        period=period,
        amount=amount,
        currency=currency,
        reason=error.detail,
        code=error.kind,
        requested_by=who.subject,
        status="refused",
    )
    q = select(refusals.c.id).where(refusals.c.kind == kind, refusals.c.external_ref == external_ref)
    rid = await uow.scalar(q)
    if rid is None:
        rid = new_id()
        await uow.execute(
            refusals.insert().values(id=rid, kind=kind, external_ref=external_ref, created_at=utcnow(), **row)
        )
    else:
        await uow.execute(update(refusals).where(refusals.c.id == rid).values(**row))
    data = events.BudgetCommitmentRefused(
        refusal_id=rid,
        kind=kind,
        external_ref=external_ref,
        plan_id=row["plan_id"],
        line_id=row["line_id"],
        line_code=line_code,
        fiscal_year=fiscal_year,
        period=period,
        amount=amount,
        currency=currency,
        memo=memo,
        reason=error.detail,
        code=error.kind,
        requested_by=who.subject,
        dimensions=row["dimensions"],
    )
    await uow.publish(events.COMMITMENT_REFUSED, rid, data)
    return await get_refusal(uow, who, refusal_id=rid)


def refusal_view(r: Any) -> dict[str, Any]:
    """A refusal as the API shows it (`schemas.RefusalOut`)."""
    return {c: getattr(r, c) for c in refusals.c.keys()}


async def _row(uow: UnitOfWork, who: Principal, refusal_id: str, lock: bool = False) -> Any:
    q = select(refusals).where(refusals.c.id == refusal_id)
    r = (await uow.execute(q.with_for_update() if lock else q)).first()
    if r is None or not who.may_see(r.dimensions):
        raise NotFound(f"No refusal {refusal_id}.")
    return r


async def get_refusal(uow: UnitOfWork, who: Principal, *, refusal_id: str) -> dict[str, Any]:
    return refusal_view(await _row(uow, who, refusal_id))


async def list_refusals(uow: UnitOfWork, who: Principal, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    """The newest first, only those whose line the caller's scopes cover (an unknown line: unscoped callers)."""
    q = select(refusals).order_by(refusals.c.created_at.desc(), refusals.c.id)
    if status is not None:
        q = q.where(refusals.c.status == status)
    rows = (await uow.execute(q)).all()
    return [refusal_view(r) for r in rows if who.may_see(r.dimensions)][:limit]


async def retry(uow: UnitOfWork, who: Principal, *, postings: Postings, refusal_id: str) -> dict[str, Any]:
    """Run the refused request again as it arrived; once it succeeds the refusal is `retried` (with its
    commitment) and cannot be retried again. Refused again: the 409 or 422 says why, nothing changes."""
    r = await _row(uow, who, refusal_id, lock=True)
    if r.status != "refused":
        raise Conflict(f"Refusal {refusal_id} was retried already (commitment {r.commitment_id}).")
    if r.kind == CONTRACT:
        term = RegistryContractTerm.model_validate(r.request)
        await integrations.contract_committed(uow, who, postings=postings, term=term)
        cid = await uow.scalar(select(commitments_table.c.id).where(commitments_table.c.external_ref == r.external_ref))
    else:
        order = PurchaseOrderIn.model_validate(r.request)
        view, _ = await integrations.erp_purchase_order(uow, who, postings=postings, order=order)
        cid = view["id"]
    await uow.execute(
        update(refusals)
        .where(refusals.c.id == refusal_id)
        .values(status="retried", commitment_id=cid, retried_at=utcnow(), retried_by=who.subject)
    )
    await uow.audit("refusal", refusal_id, action="budget.refusal.retried", after={"commitment_id": cid})
    return await get_refusal(uow, who, refusal_id=refusal_id)
