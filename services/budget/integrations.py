"""What other systems change in the budget: ERP purchase orders (a commitment per order, upserted by
revision) and invoices (actuals, against their order's commitment), registry contract terms (a
commitment per term) and workflow decisions on commitments waiting for approval.

Each is idempotent: a repeated order revision, invoice number, contract term or decision finds what
the first one did and changes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from services.budget import actuals, commitments
from services.budget.lines import get_line, resolve_line
from services.budget.models import commitments as commitments_table
from services.budget.models import entries, erp_invoices, erp_suspense
from services.budget.plans import get_plan
from services.budget.postings import Leg, Money, Postings, entry_view, postable
from services.budget.schemas import InvoiceIn, PurchaseOrderIn
from services.registry.events import RegistryContractCancelled, RegistryContractTerm
from shared.db import utcnow
from shared.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
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


class Unplaced(Invalid):
    """An invoice the budget cannot place on a line yet: its line code resolves to no line of an active plan,
    or it names no line and its purchase order is not known. A fact is never lost: the ERP ingest keeps it
    in the suspense queue (202); assigning it a line answers this as the 422 naming `budget_line`."""

    def __init__(self, reason: str, code: str = "not_found"):
        super().__init__(f"budget_line: {reason}", errors=[FieldError("budget_line", reason, code)])
        self.reason = reason


async def erp_invoice(
    uow: UnitOfWork, who: Principal, *, postings: Postings, invoice: InvoiceIn
) -> tuple[dict[str, Any], bool]:
    """Post an invoice as an actual, against its PO's commitment; idempotent by invoice number.

    The line is the one `budget_line` names (given, or mapped from coordinates by the route), else the
    line of its purchase order's commitment. A `po_number` the budget does not know (the invoice came
    before its order) is posted on its line without a commitment, the answer marked `unknown_po`; with no
    line either, or a line code no active plan has, it is `Unplaced` (kept in suspense by the route)."""
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
    order = None
    if invoice.po_number:
        q = select(commitments_table.c.id, commitments_table.c.line_id)
        order = (await uow.execute(q.where(commitments_table.c.external_ref == invoice.po_number))).first()
    if invoice.budget_line is not None:
        try:
            ln = await resolve_line(uow, invoice.fiscal_year, invoice.budget_line)
        except Invalid as exc:
            raise Unplaced(exc.errors[0].message, exc.errors[0].code) from None
        line_id = ln.id
    elif order is not None:
        line_id = order.line_id  # the order's line: the invoice pays for what was ordered
    elif invoice.po_number:
        raise Unplaced(
            f"purchase order {invoice.po_number!r} is not known (yet) and the invoice names no line "
            "(no budget_line, and no mapping rule matches its coordinates)"
        )
    else:  # the route refuses this (422 `budget_line` missing) before it comes here
        raise Invalid.on("budget_line", "is required unless coordinates or a po_number are given", "missing")
    result = await actuals.post_actual(
        uow,
        who,
        postings=postings,
        line_id=line_id,
        period=invoice.period,
        amount=invoice.amount,
        currency=invoice.currency,
        commitment_id=order.id if order is not None else None,
        external_ref=number,
        vendor=invoice.vendor,
    )
    unmatched = invoice.po_number if invoice.po_number and order is None else None
    await uow.execute(
        insert(erp_invoices).values(
            invoice_number=number, group_id=result["group_id"], created_at=utcnow(), unmatched_po=unmatched
        )
    )
    await settle_suspense(uow, who, "invoice", number, result["line_code"], result["id"])
    if invoice.po_number and order is None:
        result["unknown_po"] = invoice.po_number
    return result, True


async def match_earlier_invoices(uow: UnitOfWork, who: Principal, *, postings: Postings, po_number: str) -> int:
    """An order that arrives after invoices that pay it: their actuals consume its commitment now, as they
    would have had the order come first (a consumption entry per invoice, up to what is left of the
    order; the commitment closes once consumed in full). Returns how many invoices were matched; an
    order waiting for approval, or in another plan than an invoice, matches nothing (yet)."""
    q = select(erp_invoices).where(erp_invoices.c.unmatched_po == po_number).order_by(erp_invoices.c.created_at)
    waiting = (await uow.execute(q)).all()
    cid = await uow.scalar(select(commitments_table.c.id).where(commitments_table.c.external_ref == po_number))
    if not waiting or cid is None:
        return 0
    c, ln, p, _ = await commitments.open_commitment(uow, who, postings, cid)
    if c.status != "committed":
        return 0
    m = Money(c.original_amount_minor, c.original_currency, c.amount_minor, c.fx_rate)
    consumed, legs, matched = c.consumed_minor, [], []
    for inv in waiting:
        q = select(entries).where(entries.c.group_id == inv.group_id, entries.c.kind == "actual")
        actual = (await uow.execute(q)).one()
        if actual.plan_id != c.plan_id:
            continue
        take = min(actual.amount_minor, c.amount_minor - consumed)
        if take:
            legs.append(
                Leg(
                    ln,
                    c.period,
                    "consumption",
                    take,
                    (0, -take, 0, 0),
                    m,
                    c.entry_date,
                    commitment_id=c.id,
                    external_ref=inv.invoice_number,
                    campaign_id=c.campaign_id,
                )
            )
        consumed += take
        matched.append(inv.invoice_number)
    if legs:  # money only goes back to the line: no check
        await postings.write(uow, who, p, legs, check=False)
    if matched:
        await uow.execute(
            update(erp_invoices).where(erp_invoices.c.invoice_number.in_(matched)).values(unmatched_po=None)
        )
        status = "closed" if consumed >= c.amount_minor else "committed"
        await commitments.set_status(uow, c, status, None, consumed_minor=consumed)
        await uow.audit("commitment", c.id, action="budget.commitment.matched", after={"invoices": matched})
    return len(matched)


async def settle_suspense(
    uow: UnitOfWork, who: Principal, kind: str, ref: str, line_code: str | None, result_id: str
) -> None:
    """A document posted now (assigned, or redelivered once its line exists) no longer waits in suspense."""
    waiting = (
        (erp_suspense.c.kind == kind) & (erp_suspense.c.document_ref == ref) & (erp_suspense.c.status == "waiting")
    )
    sid = await uow.scalar(select(erp_suspense.c.id).where(waiting))
    if sid is None:
        return
    await uow.execute(
        update(erp_suspense)
        .where(erp_suspense.c.id == sid)
        .values(status="posted", line_code=line_code, result_id=result_id, posted_by=who.subject, updated_at=utcnow())
    )
    await uow.audit("erp_suspense", sid, action="budget.erp.assigned", after={"line_code": line_code})


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
