"""Supplier organisations: their contacts and the business calendar their deliverables are due on.

Mops and admins without dimension scopes register suppliers; a supplier's principal (the role
`supplier` with the scope `supplier:<id>`) sees only its own organisation and acts only on its
own deliverables (`acts_for`), everyone else who may read the workflow sees them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select

from services.workflow.container import Workflow
from services.workflow.deliverable_schemas import SupplierIn, SupplierOut, SupplierPage
from services.workflow.instances import new_id
from services.workflow.models import suppliers
from shared.db import utcnow
from shared.errors import Conflict, Invalid, NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, encode_cursor
from shared.uow import UnitOfWork

ROLE = "supplier"


def supplier_ids(who: Principal) -> frozenset[str] | None:
    """The suppliers a supplier's principal acts for (empty: none); None for everyone else."""
    if not who.has_role(ROLE):
        return None
    return who.scope_values(ROLE) or frozenset()


def acts_for(who: Principal, supplier_id: str | None) -> bool:
    ids = supplier_ids(who)
    return supplier_id is not None and ids is not None and supplier_id in ids


async def create(uow: UnitOfWork, who: Principal, *, body: SupplierIn, wf: Workflow) -> SupplierOut:
    if body.calendar not in await wf.calendars.keys(uow):
        raise Invalid.on("calendar", f"unknown calendar {body.calendar!r}: create it first (POST /v1/calendars)")
    if await uow.scalar(select(suppliers.c.id).where(suppliers.c.name == body.name)):
        raise Conflict(f"A supplier named {body.name!r} exists.")
    row = {
        "id": new_id(),
        "name": body.name,
        "calendar": body.calendar,
        "contacts": [c.model_dump() for c in body.contacts],
        "created_at": utcnow(),
        "created_by": who.subject,
    }
    await uow.execute(insert(suppliers).values(**row))
    return SupplierOut.model_validate(row)


async def row_of(uow: UnitOfWork, supplier_id: str) -> Mapping[Any, Any] | None:
    return (await uow.execute(select(suppliers).where(suppliers.c.id == supplier_id))).mappings().first()


async def get(uow: UnitOfWork, who: Principal, supplier_id: str) -> SupplierOut:
    ids = supplier_ids(who)
    row = await row_of(uow, supplier_id) if ids is None or supplier_id in ids else None
    if row is None:
        raise NotFound(f"No supplier {supplier_id}.")
    return SupplierOut.model_validate(dict(row))


async def list_suppliers(uow: UnitOfWork, who: Principal, *, limit: int, cursor: str | None) -> SupplierPage:
    q = select(suppliers).order_by(suppliers.c.name)
    ids = supplier_ids(who)
    if ids is not None:
        q = q.where(suppliers.c.id.in_(sorted(ids)))
    after = decode_cursor(cursor, str)
    if after:
        q = q.where(suppliers.c.name > after[0])
    rows = (await uow.execute(q.limit(limit + 1))).mappings().all()
    nxt = encode_cursor(rows[limit - 1]["name"]) if len(rows) > limit else None
    return SupplierPage(items=[SupplierOut.model_validate(dict(r)) for r in rows[:limit]], next_cursor=nxt)
