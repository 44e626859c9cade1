"""The ERP suspense queue: a purchase order or invoice that names no budget line and whose coordinates
match no mapping rule waits here (the ERP gets a 202 with it) instead of being lost or refused. Once a
rule maps it or someone assigns it a line (`assign`), it is posted as if it had arrived so, once: the
item becomes `posted` with the commitment or actual it made, and a later redelivery of the same
document is posted to that line (the ingest's own idempotency answers it as the replay it is).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import insert, select, update

from services.budget import erp_mapping, integrations
from services.budget.models import erp_suspense
from services.budget.postings import Postings, new_id
from services.budget.schemas import InvoiceIn, PurchaseOrderIn
from shared.db import utcnow
from shared.errors import Conflict, NotFound
from shared.identity import Principal, ensure_unscoped
from shared.uow import UnitOfWork

Kind = Literal["purchase_order", "invoice"]
Document = PurchaseOrderIn | InvoiceIn


def kind_of(doc: Document) -> tuple[Kind, str]:
    if isinstance(doc, PurchaseOrderIn):
        return "purchase_order", doc.po_number
    return "invoice", doc.invoice_number


def suspense_view(r: Any) -> dict[str, Any]:
    """An item as the API shows it (`erp_schemas.SuspenseOut`)."""
    return {c: getattr(r, c) for c in erp_suspense.c.keys()}


async def find(uow: UnitOfWork, doc: Document) -> Any:
    kind, ref = kind_of(doc)
    q = select(erp_suspense).where(erp_suspense.c.kind == kind, erp_suspense.c.document_ref == ref)
    return (await uow.execute(q)).first()


async def route(uow: UnitOfWork, who: Principal, doc: Document) -> tuple[Document, dict[str, Any] | None]:
    """The document with its line code (given, mapped, or the one it was posted to from suspense), or
    the suspense item it now waits as (kept, or updated by this newer delivery). An invoice that names
    a purchase order goes on without a line when no rule maps it: its order's line is the one it pays."""
    if doc.budget_line is not None or (isinstance(doc, PurchaseOrderIn) and doc.action == "cancelled"):
        return doc, None
    if isinstance(doc, InvoiceIn) and doc.po_number and not doc.has_coordinates():
        return doc, None
    code, reason = await erp_mapping.line_code_for(uow, doc.coordinates())
    if code is None:
        prior = await find(uow, doc)
        if prior is not None and prior.status == "posted":
            code = prior.line_code
        elif isinstance(doc, InvoiceIn) and doc.po_number:
            return doc, None
        else:
            return doc, await hold(uow, who, doc, reason, prior)
    return doc.model_copy(update={"budget_line": code}), None


async def hold(uow: UnitOfWork, who: Principal, doc: Document, reason: str, prior: Any) -> dict[str, Any]:
    kind, ref = kind_of(doc)
    now = utcnow()
    values = dict(
        request=doc.model_dump(mode="json"),
        coordinates=doc.coordinates(),
        amount=None if doc.amount is None else str(doc.amount),
        currency=doc.currency,
        reason=reason,
        received_by=who.subject,
        updated_at=now,
    )
    if prior is None:
        sid = new_id()
        await uow.execute(
            insert(erp_suspense).values(id=sid, kind=kind, document_ref=ref, status="waiting", created_at=now, **values)
        )
        await uow.audit("erp_suspense", sid, action="budget.erp.suspended", after={"kind": kind, "ref": ref})
    else:
        sid = prior.id
        await uow.execute(update(erp_suspense).where(erp_suspense.c.id == sid).values(**values))
    return await get_item(uow, suspense_id=sid)


async def get_item(uow: UnitOfWork, *, suspense_id: str, lock: bool = False) -> dict[str, Any]:
    q = select(erp_suspense).where(erp_suspense.c.id == suspense_id)
    r = (await uow.execute(q.with_for_update() if lock else q)).first()
    if r is None:
        raise NotFound(f"No suspended ERP document {suspense_id}.")
    return suspense_view(r)


async def list_items(uow: UnitOfWork, *, status: str | None, limit: int) -> list[dict[str, Any]]:
    q = select(erp_suspense).order_by(erp_suspense.c.created_at.desc(), erp_suspense.c.id).limit(limit)
    if status is not None:
        q = q.where(erp_suspense.c.status == status)
    return [suspense_view(r) for r in (await uow.execute(q)).all()]


async def assign(
    uow: UnitOfWork, who: Principal, *, postings: Postings, suspense_id: str, budget_line: str | None
) -> dict[str, Any]:
    """Post a waiting document to `budget_line` (or to the line the rules map it to now), once. A
    posting the budget refuses (no money, no such line) is a 409/422 and the item keeps waiting."""
    ensure_unscoped(who, "Assigning an ERP document")
    item = await get_item(uow, suspense_id=suspense_id, lock=True)
    if item["status"] != "waiting":
        raise Conflict(f"ERP document {item['document_ref']} was posted already (to line {item['line_code']!r}).")
    doc: Document = (PurchaseOrderIn if item["kind"] == "purchase_order" else InvoiceIn).model_validate(item["request"])
    code = budget_line
    if code is None:
        code, reason = await erp_mapping.line_code_for(uow, doc.coordinates())
        if code is None and not (isinstance(doc, InvoiceIn) and doc.po_number):
            raise Conflict(f"{reason[0].upper()}{reason[1:]}; add a rule or assign a budget_line.")
    doc = doc.model_copy(update={"budget_line": code})
    if isinstance(doc, PurchaseOrderIn):
        view, _ = await integrations.erp_purchase_order(uow, who, postings=postings, order=doc)
    else:
        try:
            view, _ = await integrations.erp_invoice(uow, who, postings=postings, invoice=doc)
        except integrations.Unplaced as exc:
            if budget_line is not None:
                raise  # the line named is no line: the 422 naming budget_line
            raise Conflict(f"{exc.reason[0].upper()}{exc.reason[1:]}; assign a budget_line.") from None
    await integrations.settle_suspense(uow, who, item["kind"], item["document_ref"], view["line_code"], view["id"])
    return await get_item(uow, suspense_id=suspense_id)
