"""What other systems change in the budget: ERP purchase orders (a commitment per order, upserted by
revision) and invoices (actuals, against their order's commitment), registry contract terms (a
commitment per term) and workflow decisions on commitments waiting for approval.

Each is idempotent: a repeated order revision, invoice number, contract term or decision finds what
the first one did and changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from services.budget import actuals, commitments
from services.budget.lines import get_line, resolve_line
from services.budget.models import commitments as commitments_table
from services.budget.models import entries, erp_invoices
from services.budget.plans import get_plan
from services.budget.postings import Postings, entry_view, postable
from services.budget.schemas import InvoiceIn, PurchaseOrderIn
from services.registry.events import RegistryContractCancelled, RegistryContractTerm
from shared.db import utcnow
from shared.errors import Conflict, Forbidden, Invalid, NotFound
from shared.identity import Principal
from shared.uow import UnitOfWork


async def _by_ref(uow: UnitOfWork, external_ref: str) -> Any:
    return (
        await uow.execute(select(commitments_table).where(commitments_table.c.external_ref == external_ref))
    ).first()


async def erp_purchase_order(
    uow: UnitOfWork, who: Principal, *, postings: Postings, order: PurchaseOrderIn
) -> tuple[dict[str, Any], bool]:
    """Upsert the commitment of a PO; returns (commitment, created). Idempotent by (po_number, revision)."""
    po, revision = order.po_number, order.revision
    existing = await _by_ref(uow, po)
    if existing is not None and existing.external_revision is not None and revision <= existing.external_revision:
        return await commitments.get_commitment(uow, who, postings=postings, commitment_id=existing.id), False
    if order.action == "cancelled":
        if existing is None:
            raise NotFound(f"No commitment for purchase order {po!r}.")
        return await _cancel_order(uow, who, postings, existing.id, revision), False
    assert order.fiscal_year is not None and order.budget_line is not None and order.period is not None
    assert order.amount is not None and order.currency is not None  # PurchaseOrderIn.missing_for_upsert
    ln = await resolve_line(uow, order.fiscal_year, order.budget_line)
    if not who.may_see(ln.dimensions):
        raise Forbidden(f"Your scopes do not cover line {ln.code!r}.")
    if existing is None:
        created = await commitments.create_commitment(
            uow,
            who,
            postings=postings,
            line_id=ln.id,
            period=order.period,
            amount=order.amount,
            currency=order.currency,
            external_ref=po,
            memo=order.description,
            vendor=order.vendor,
            external_revision=revision,
        )
        return created, True
    changed = await commitments.change_commitment(
        uow,
        who,
        postings=postings,
        commitment=existing,
        line=ln,
        period=order.period,
        amount=order.amount,
        currency=order.currency,
        external_revision=revision,
        vendor=order.vendor,
        memo=order.description,
    )
    return changed, False


async def _cancel_order(
    uow: UnitOfWork, who: Principal, postings: Postings, commitment_id: str, revision: int
) -> dict[str, Any]:
    c, ln, p, _ = await commitments.open_commitment(uow, who, postings, commitment_id)
    if c.external_revision is not None and revision <= c.external_revision:
        return commitments.commitment_view(c, p, ln)  # a newer revision won meanwhile
    if c.status in commitments.OPEN_STATUSES:
        await postable(uow, p, c.period, None)  # a closed month refuses the release, as the API does
        c = await commitments.release_locked(uow, who, postings, c, ln, p)
    c = await commitments.set_status(uow, c, c.status, None, external_revision=revision)
    return commitments.commitment_view(c, p, ln)


async def erp_invoice(
    uow: UnitOfWork, who: Principal, *, postings: Postings, invoice: InvoiceIn
) -> tuple[dict[str, Any], bool]:
    """Post an invoice as an actual, against its PO's commitment; idempotent by invoice number."""
    number = invoice.invoice_number
    seen = (await uow.execute(select(erp_invoices).where(erp_invoices.c.invoice_number == number))).first()
    if seen is not None:
        q = select(entries).where(entries.c.group_id == seen.group_id, entries.c.kind == "actual")
        e = (await uow.execute(q)).first()
        if e is None:  # an invoice is recorded with its actual, in one transaction
            raise RuntimeError(f"invoice {number!r} has no actual entry")
        p = await get_plan(uow, e.plan_id)
        ln = await get_line(uow, who, e.line_id)
        return {**entry_view(e, p.currency, ln.code), "replayed": True}, False
    if invoice.budget_line is None:  # the route maps coordinates to a line code (or holds it in suspense) first
        raise Invalid.on("budget_line", "is required unless a mapping rule matches the coordinates", "missing")
    ln = await resolve_line(uow, invoice.fiscal_year, invoice.budget_line)
    commitment_id = None
    if invoice.po_number:
        commitment_id = await uow.scalar(
            select(commitments_table.c.id).where(commitments_table.c.external_ref == invoice.po_number)
        )
        if commitment_id is None:
            raise Invalid.on("po_number", f"no purchase order {invoice.po_number!r} is known", "not_found")
    result = await actuals.post_actual(
        uow,
        who,
        postings=postings,
        line_id=ln.id,
        period=invoice.period,
        amount=invoice.amount,
        currency=invoice.currency,
        commitment_id=commitment_id,
        external_ref=number,
        vendor=invoice.vendor,
    )
    await uow.execute(
        insert(erp_invoices).values(invoice_number=number, group_id=result["group_id"], created_at=utcnow())
    )
    return result, True


def contract_ref(term: RegistryContractTerm) -> str:
    """The commitment's reference of a contract term (as the registry writes it in `external_ref`)."""
    return f"contract:{term.contract_id}:{term.term}"


async def contract_committed(
    uow: UnitOfWork, who: Principal, *, postings: Postings, term: RegistryContractTerm
) -> None:
    """registry.contract.created/renewed: commit the term's cost against its budget line (once)."""
    ref = contract_ref(term)
    if not term.budget_line_code or term.commit_amount <= 0:
        return  # a free or unbudgeted tool: nothing to commit
    if await uow.scalar(select(commitments_table.c.id).where(commitments_table.c.external_ref == ref)):
        return
    ln = await resolve_line(uow, term.fiscal_year, term.budget_line_code, "budget_line_code")
    await commitments.create_commitment(
        uow,
        who,
        postings=postings,
        line_id=ln.id,
        period=term.period,
        amount=term.commit_amount,
        currency=term.currency,
        external_ref=ref,
        memo=f"{term.tool_name} contract term {term.term}",
        vendor=term.tool_name,
    )


async def contract_cancelled(
    uow: UnitOfWork, who: Principal, *, postings: Postings, term: RegistryContractCancelled
) -> None:
    """registry.contract.cancelled: release what is left of the term's commitment."""
    cid = await uow.scalar(select(commitments_table.c.id).where(commitments_table.c.external_ref == contract_ref(term)))
    if cid is None:
        return
    c, ln, p, _ = await commitments.open_commitment(uow, None, postings, cid)
    if c.status in commitments.OPEN_STATUSES:
        await commitments.release_locked(uow, who, postings, c, ln, p)


async def workflow_decided(
    uow: UnitOfWork, who: Principal, *, postings: Postings, commitment_id: str, approved: bool
) -> None:
    """workflow.instance.approved/rejected about a commitment: approve or release it, unless decided already."""
    c = await commitments.get_row(uow, commitment_id)
    if c.status != "pending_approval":
        return  # already decided here (e.g. by finance through the API); nothing to do
    decide = commitments.approve if approved else commitments.release
    try:
        await decide(uow, who, postings=postings, commitment_id=commitment_id)
    except Conflict:
        # Decided through the API between our read and our lock (nothing was written yet): done.
        if (await commitments.get_row(uow, commitment_id)).status != "pending_approval":
            return
        raise
