"""Contracts and their terms: create, renew (the next term), cancel, read.

A contract keeps its id across terms; each term is recorded in `contract_terms`, schedules its
renewal reminder and publishes the event budget commits from (`registry.contract.created`,
`renewed`; `cancelled` releases). Contracts commit money on any budget line, so every change
needs a principal no dimension scope narrows.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import select

from services.registry import cursors, events, savings, schemas
from services.registry.milestones import MilestonePlan
from services.registry.models import Contract, ContractTerm, Tool
from services.registry.renewals import RenewalClock
from services.registry.terms import annual_minor, check_term, commit_minor, next_term, notice_deadline
from shared.contracts import EventSpec
from shared.db import utcnow
from shared.errors import Conflict, Errors, NotFound, PreconditionFailed
from shared.identity import Principal, ensure_unscoped
from shared.money import fmt, from_minor
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

WHAT = "A tool contract"  # what a scoped principal may not change


def record(c: Contract, tool_name: str) -> schemas.ContractOut:
    """The contract's current term as the API shows it."""
    return schemas.ContractOut(
        id=c.id,
        tool_id=c.tool_id,
        tool_name=tool_name,
        term=c.term,
        start=c.start,
        end=c.end,
        billing_period=c.billing_period,
        cost=fmt(c.cost_minor, c.currency),
        currency=c.currency,
        annual_cost=fmt(annual_minor(c.cost_minor, c.billing_period), c.currency),
        commit_amount=fmt(commit_minor(c.cost_minor, c.billing_period, c.start, c.end), c.currency),
        seats=c.seats,
        auto_renew=c.auto_renew,
        notice_days=c.notice_days,
        notice_deadline=notice_deadline(c.end, c.notice_days),
        budget_line_code=c.budget_line_code,
        external_ref=c.external_ref,
        status=c.status,
        version=c.version,
        created_at=c.created_at,
        updated_at=c.updated_at,
        notice_given_at=c.notice_given_at,
        **budget_answer(c),
    )


def budget_answer(c: Contract) -> dict[str, Any]:
    """What the budget last said about the current term's commitment (nothing about an earlier term's)."""
    if c.budget_term != c.term or c.budget_status is None:
        return {}
    refusal = None
    if c.budget_status == "refused" and c.budget_at is not None:
        refusal = schemas.BudgetRefusal(
            refusal_id=c.budget_refusal_id or "",
            reason=c.budget_reason or "",
            code=c.budget_code or "",
            refused_at=c.budget_at,
        )
    return {"budget_status": c.budget_status, "budget_refusal": refusal}


CONTRACT_REF = re.compile(r"^contract:(?P<id>[^:]{1,36}):(?P<term>[0-9]{1,9})$")


async def budget_said(
    uow: UnitOfWork,
    *,
    external_ref: str | None,
    status: schemas.BudgetStatus,
    at: dt.datetime,
    refusal_id: str | None = None,
    reason: str | None = None,
    code: str | None = None,
) -> bool:
    """A budget.commitment.* event about a contract term (external_ref `contract:<id>:<term>`): the
    contract shows it while it is about its current term. An older word than the one kept (events
    redelivered out of order) changes nothing; a reference that is no contract's is not ours."""
    m = CONTRACT_REF.match(external_ref or "")
    if m is None:
        return False
    c = await uow.get(Contract, m["id"], with_for_update=True)
    term = int(m["term"])
    if c is None or term != c.term:
        return False  # another registry's contract, or a term that has been succeeded
    if c.budget_term == term and c.budget_at is not None and at < c.budget_at:
        return False
    c.budget_term, c.budget_status, c.budget_at = term, status, at
    c.budget_refusal_id, c.budget_reason, c.budget_code = refusal_id, reason, code
    await uow.flush()
    return True


def term_event(c: Contract, tool: Tool) -> events.RegistryContractTerm:
    """The data of registry.contract.created|renewed (cancelled adds the reason)."""
    return events.RegistryContractTerm(
        contract_id=c.id,
        tool_id=tool.id,
        tool_name=tool.name,
        term=c.term,
        start=c.start,
        end=c.end,
        billing_period=c.billing_period,
        cost=from_minor(c.cost_minor, c.currency),
        currency=c.currency,
        annual_cost=from_minor(annual_minor(c.cost_minor, c.billing_period), c.currency),
        commit_amount=from_minor(commit_minor(c.cost_minor, c.billing_period, c.start, c.end), c.currency),
        budget_line_code=c.budget_line_code,
        fiscal_year=c.start.year,
        period=f"{c.start.year:04d}-{c.start.month:02d}",
        seats=c.seats,
        auto_renew=c.auto_renew,
        notice_days=c.notice_days,
        external_ref=f"contract:{c.id}:{c.term}",
    )


@dataclass(frozen=True)
class Contracts:
    """Contract use cases; each term's reminder is set on `clock`, its milestones on `milestones`."""

    clock: RenewalClock
    milestones: MilestonePlan

    async def create(self, uow: UnitOfWork, who: Principal, *, body: schemas.ContractIn) -> schemas.ContractOut:
        ensure_unscoped(who, WHAT)
        errors = Errors()
        tool = await uow.get(Tool, body.tool_id)
        if tool is None:
            errors.add("tool_id", f"no tool with id {body.tool_id!r}", "unknown_tool")
        elif tool.lifecycle == "retired":
            errors.add("tool_id", f"{tool.name} is retired; a retired tool takes no new contracts", "retired_tool")
        cost_minor = check_term(
            errors,
            start=body.start,
            end=body.end,
            billing_period=body.billing_period,
            cost=body.cost,
            currency=body.currency,
            notice_days=body.notice_days,
        )
        errors.raise_if_any()
        assert tool is not None and cost_minor is not None
        now = utcnow()
        contract = Contract(
            id=str(uuid.uuid4()),
            tool_id=tool.id,
            term=1,
            start=body.start,
            end=body.end,
            billing_period=body.billing_period,
            cost_minor=cost_minor,
            currency=body.currency,
            seats=body.seats,
            auto_renew=body.auto_renew,
            notice_days=body.notice_days,
            budget_line_code=body.budget_line_code,
            external_ref=body.external_ref,
            status="active",
            version=1,
            created_at=now,
            updated_at=now,
        )
        uow.add(contract)
        await uow.flush()
        await self._start_term(uow, contract, tool, events.CONTRACT_CREATED)
        return record(contract, tool.name)

    async def renew(
        self,
        uow: UnitOfWork,
        who: Principal,
        *,
        contract_id: str,
        body: schemas.RenewIn,
        expected_version: int | None,
    ) -> schemas.ContractOut:
        """Start the next term; whatever `body` leaves out is carried over (and checked like a given value:
        a term ending near the last date has no next term)."""
        ensure_unscoped(who, WHAT)
        c, tool = await _for_change(uow, contract_id, expected_version)
        start, end = next_term(c.start, c.end, new_start=body.start, new_end=body.end)
        currency = body.currency or c.currency
        cost = body.cost if body.cost is not None else Decimal(fmt(c.cost_minor, c.currency))
        errors = Errors()
        if start <= c.end:
            errors.add(
                "start",
                f"the next term must start after the current one ends ({c.end.isoformat()})",
                "overlapping_term",
            )
        cost_minor = check_term(
            errors,
            start=start,
            end=end,
            billing_period=body.billing_period or c.billing_period,
            cost=cost,
            currency=currency,
            notice_days=body.notice_days if body.notice_days is not None else c.notice_days,
        )
        errors.raise_if_any()
        assert cost_minor is not None
        before, old_term, noticed = savings.Terms.of(c), c.term, c.notice_given_at is not None
        await self._close_term(uow, c, "renewed")
        c.term += 1
        c.start, c.end, c.cost_minor, c.currency = start, end, cost_minor, currency
        for name in ("billing_period", "seats", "auto_renew", "notice_days", "budget_line_code"):
            value = getattr(body, name)
            if value is not None:
                setattr(c, name, value)
        c.version += 1
        c.updated_at = utcnow()
        c.notice_given_at = None  # a notice ended the old term's renewal; the new term starts afresh
        await uow.flush()
        await self._start_term(uow, c, tool, events.CONTRACT_RENEWED)
        if noticed:  # the saving its notice recorded does not happen
            await savings.publish_withdrawn(uow, c, tool, term=old_term, before=before)
        await savings.publish_cut(uow, c, tool, before)
        return record(c, tool.name)

    async def cancel(
        self,
        uow: UnitOfWork,
        who: Principal,
        *,
        contract_id: str,
        body: schemas.CancelIn,
        expected_version: int | None,
    ) -> schemas.ContractOut:
        """End the current term: budget releases its commitment."""
        ensure_unscoped(who, WHAT)
        c, tool = await _for_change(uow, contract_id, expected_version)
        await self._close_term(uow, c, "cancelled")
        c.status = "cancelled"
        c.cancelled_at = c.updated_at = utcnow()
        c.version += 1
        await uow.flush()
        cancelled = events.RegistryContractCancelled(**term_event(c, tool).model_dump(), reason=body.reason)
        await uow.publish(events.CONTRACT_CANCELLED, c.id, cancelled)
        if c.notice_given_at is None:  # a notice recorded the term's saving already
            await savings.publish_cancellation(uow, c, tool, effective_on=c.cancelled_at.date())
        return record(c, tool.name)

    async def get(self, uow: UnitOfWork, *, contract_id: str) -> schemas.ContractDetail:
        """The contract with every term it has had and when its reminder fires."""
        c = await uow.get(Contract, contract_id)
        if c is None:
            raise NotFound(f"No contract with id {contract_id!r}.")
        tool = await uow.get(Tool, c.tool_id)
        query = select(ContractTerm).where(ContractTerm.contract_id == c.id).order_by(ContractTerm.term)
        terms = [
            schemas.TermOut(
                term=t.term,
                start=t.start,
                end=t.end,
                billing_period=t.billing_period,
                cost=fmt(t.cost_minor, t.currency),
                currency=t.currency,
                commit_amount=fmt(t.commit_minor, t.currency),
                seats=t.seats,
                outcome=t.outcome,
            )
            for t in (await uow.scalars(query)).all()
        ]
        current = record(c, tool.name if tool else "")
        return schemas.ContractDetail(
            **current.model_dump(), renewal_due_at=await self.clock.pending(uow, c.id), terms=terms
        )

    async def _start_term(
        self, uow: UnitOfWork, c: Contract, tool: Tool, spec: EventSpec[events.RegistryContractTerm]
    ) -> None:
        """Record the term, schedule its renewal reminder and publish the event budget commits from."""
        uow.add(
            ContractTerm(
                contract_id=c.id,
                term=c.term,
                start=c.start,
                end=c.end,
                billing_period=c.billing_period,
                cost_minor=c.cost_minor,
                currency=c.currency,
                commit_minor=commit_minor(c.cost_minor, c.billing_period, c.start, c.end),
                seats=c.seats,
                outcome="current",
                created_at=utcnow(),
            )
        )
        await self.clock.schedule(uow, c)
        await self.milestones.schedule(uow, c)
        await uow.publish(spec, c.id, term_event(c, tool))

    async def _close_term(self, uow: UnitOfWork, c: Contract, outcome: Literal["renewed", "cancelled"]) -> None:
        await self.clock.cancel(uow, c.id)
        await self.milestones.cancel(uow, c.id)
        term = await uow.get(ContractTerm, (c.id, c.term))
        if term is not None:
            term.outcome = outcome


async def _for_change(uow: UnitOfWork, contract_id: str, expected_version: int | None) -> tuple[Contract, Tool]:
    """The active contract, locked, at the version the caller read (If-Match), and its tool."""
    query = select(Contract).where(Contract.id == contract_id)
    if uow.dialect != "sqlite":
        query = query.with_for_update()
    c: Contract | None = await uow.scalar(query)
    if c is None:
        raise NotFound(f"No contract with id {contract_id!r}.")
    if c.status != "active":
        raise Conflict(f"The contract is {c.status}; only an active contract can be renewed or cancelled.")
    if expected_version is not None and c.version != expected_version:
        raise PreconditionFailed(
            f"The contract is at version {c.version}, not {expected_version}: reload it and try again.",
            current_version=c.version,
        )
    tool = await uow.get(Tool, c.tool_id)
    assert tool is not None
    return c, tool


async def list_contracts(
    uow: UnitOfWork,
    *,
    limit: int,
    cursor: str | None,
    tool_id: str | None = None,
    status: str | None = None,
) -> schemas.ContractPage:
    query = select(Contract, Tool.name).join(Tool, Tool.id == Contract.tool_id).order_by(Contract.end, Contract.id)
    if tool_id:
        query = query.where(Contract.tool_id == tool_id)
    if status:
        query = query.where(Contract.status == status)
    key = decode_cursor(cursor, cursors.day, cursors.text)
    if key:
        end_day, last_id = key
        query = query.where((Contract.end > end_day) | ((Contract.end == end_day) & (Contract.id > last_id)))
    rows = list((await uow.execute(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r[0].end.isoformat(), r[0].id))
    return schemas.ContractPage(items=[record(c, name) for c, name in page], next_cursor=next_cursor)
