"""Renewal reviews that act: the workflow's outcome of a `tool-renewal` review changes the contract.

The workflow reviews a term when `registry.renewal.due` fires; its instance events come back here:
- approved: **renew**: the next term starts (on renegotiated terms if the review's context carries
  them under `renewal`), and budget commits it from `registry.contract.renewed`;
- rejected: **cancel**: notice is recorded before the notice deadline (the term runs out and does
  not renew); if the next term had already started, it is cancelled and budget releases it;
- changes_requested / resubmitted: **renegotiate**: nothing changes until the review decides on the
  new terms (the requester resubmits them in `context.renewal`);
- cancelled: the review was withdrawn.
A decision after the term's notice deadline is `late`: if the term auto-renewed meanwhile (the day
after an unanswered deadline: `auto_renew`), the decision has no effect and says which term started.
Every decision is one row (per workflow instance) and a `registry.renewal.decided` event.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select

from services.registry import cursors, events, savings, schemas
from services.registry.contracts import Contracts
from services.registry.milestones import MilestonePlan
from services.registry.models import Contract, ContractTerm, RenewalDecision, Tool
from services.registry.renewals import RenewalClock
from services.registry.terms import notice_deadline
from shared.db import utcnow
from shared.errors import Invalid
from shared.identity import Principal
from shared.pagination import decode_cursor, page_of
from shared.uow import UnitOfWork

REGISTRY = Principal(subject="service:registry", roles=frozenset({"admin"}), kind="service")
Kind = Literal["approved", "rejected", "changes_requested", "resubmitted", "cancelled"]


@dataclass(frozen=True)
class Reviews:
    contracts: Contracts
    clock: RenewalClock
    milestones: MilestonePlan

    async def on_outcome(
        self,
        uow: UnitOfWork,
        who: Principal,
        *,
        instance_id: str,
        contract_id: str,
        kind: Kind,
        context: dict[str, Any],
        decided_at: dt.datetime,
    ) -> None:
        """Apply one instance event of a renewal review (idempotent per instance and kind)."""
        c = await self._locked(uow, contract_id)
        term = _term_of(context, c.term)
        deadline = await self._deadline(uow, c, term)
        row = await uow.scalar(select(RenewalDecision).where(RenewalDecision.instance_id == instance_id))
        new = row is None
        if row is None:  # added once complete: the renewal below reads (and would flush) the session
            row = RenewalDecision(
                id=str(uuid.uuid4()), contract_id=c.id, term=term, instance_id=instance_id, notice_deadline=deadline
            )
        row.actor, row.decided_at, row.updated_at = who.subject, decided_at, utcnow()
        row.late = decided_at.date() > deadline
        if kind in ("changes_requested", "resubmitted"):
            row.outcome, row.status = "renegotiate", "waiting"
            if kind == "resubmitted" and isinstance(context.get("renewal"), dict):
                row.new_terms = _renewal_terms(context).model_dump(mode="json", exclude_none=True)
            row.effect = "waiting for the renegotiated terms" if row.new_terms is None else "new terms received"
        elif kind == "cancelled":
            row.outcome, row.status, row.effect = "withdrawn", "no_effect", "the review was withdrawn"
        elif kind == "approved":
            await self._renew(uow, who, c, row, _renewal_terms(context))
        else:
            await self._cancel(uow, who, c, row)
        if new:
            uow.add(row)
        await uow.flush()
        await self._publish(uow, c, row)

    async def _renew(
        self, uow: UnitOfWork, who: Principal, c: Contract, row: RenewalDecision, body: schemas.RenewIn
    ) -> None:
        row.outcome = "renew"
        row.new_terms = body.model_dump(mode="json", exclude_none=True) or row.new_terms
        if c.status != "active":
            row.status, row.effect = "no_effect", "the contract had been cancelled"
        elif c.term > row.term:
            row.status, row.auto_renewed_term = "no_effect", await self._auto_renewed(uow, c, row.term)
            row.effect = f"term {row.term + 1} had already started"
        else:
            renewed = await self.contracts.renew(uow, who, contract_id=c.id, body=body, expected_version=None)
            row.status, row.next_term = "applied", renewed.term
            on = " on the renegotiated terms" if row.new_terms else ""
            row.effect = f"renewed{on}: term {renewed.term} runs {renewed.start} to {renewed.end}"

    async def _cancel(self, uow: UnitOfWork, who: Principal, c: Contract, row: RenewalDecision) -> None:
        row.outcome = "cancel"
        deadline = row.notice_deadline.isoformat()
        if c.status != "active":
            row.status, row.effect = "no_effect", "the contract had been cancelled"
        elif c.term > row.term and row.late:
            row.status, row.auto_renewed_term = "no_effect", await self._auto_renewed(uow, c, row.term)
            row.effect = f"decided after the notice deadline {deadline}: term {c.term} had started meanwhile"
        elif c.term > row.term:
            await self.contracts.cancel(
                uow,
                who,
                contract_id=c.id,
                body=schemas.CancelIn(reason="renewal review: cancel"),
                expected_version=None,
            )
            row.status, row.effect = "applied", f"term {c.term} cancelled before it was due: its commitment released"
        elif row.late and c.auto_renew:
            row.status = "no_effect"
            row.effect = f"decided after the notice deadline {deadline}: too late to give notice, the term auto-renews"
        else:
            await self.clock.cancel(uow, c.id)
            await self.milestones.cancel(uow, c.id)
            c.notice_given_at, c.auto_renew = row.decided_at, False
            c.version += 1
            c.updated_at = utcnow()
            tool = await uow.get(Tool, c.tool_id)
            assert tool is not None
            await savings.publish_cancellation(uow, c, tool, effective_on=c.end + dt.timedelta(days=1))
            row.status = "applied"
            row.effect = f"notice given: the term ends on {c.end.isoformat()} and does not renew"

    async def auto_renew(self, uow: UnitOfWork, timer: Any) -> None:
        """The day after an unanswered notice deadline an auto-renewing term renews (the timer's handler)."""
        c = await uow.get(Contract, timer.subject_id)
        term = timer.payload.get("term")
        if c is None or c.status != "active" or c.term != term or not c.auto_renew or c.notice_given_at:
            return
        deadline = notice_deadline(c.end, c.notice_days)
        renewed = await self.contracts.renew(
            uow, REGISTRY, contract_id=c.id, body=schemas.RenewIn(), expected_version=None
        )
        now = utcnow()
        row = RenewalDecision(
            id=str(uuid.uuid4()),
            contract_id=c.id,
            term=term,
            instance_id=None,
            outcome="auto_renewed",
            status="applied",
            late=False,
            notice_deadline=deadline,
            decided_at=now,
            actor=REGISTRY.subject,
            effect=f"no notice by {deadline.isoformat()}: renewed automatically to term {renewed.term}",
            next_term=renewed.term,
            updated_at=now,
        )
        uow.add(row)
        await uow.flush()
        await self._publish(uow, c, row)

    async def _auto_renewed(self, uow: UnitOfWork, c: Contract, term: int) -> int | None:
        """The term an automatic renewal of `term` started, if one did."""
        d = RenewalDecision
        query = select(d.next_term).where(d.contract_id == c.id, d.term == term, d.outcome == "auto_renewed")
        found: int | None = await uow.scalar(query)
        return found

    async def _locked(self, uow: UnitOfWork, contract_id: str) -> Contract:
        query = select(Contract).where(Contract.id == contract_id)
        if uow.dialect != "sqlite":
            query = query.with_for_update()
        c: Contract | None = await uow.scalar(query)
        if c is None:
            raise Invalid.on("data.subject.id", f"no contract with id {contract_id!r}", "unknown_contract")
        return c

    async def _deadline(self, uow: UnitOfWork, c: Contract, term: int) -> dt.date:
        if term == c.term:
            return notice_deadline(c.end, c.notice_days)
        past = await uow.get(ContractTerm, (c.id, term))
        if past is None:
            raise Invalid.on("data.context.term", f"the contract has no term {term}", "unknown_term")
        return notice_deadline(past.end, c.notice_days)

    async def _publish(self, uow: UnitOfWork, c: Contract, row: RenewalDecision) -> None:
        tool = await uow.get(Tool, c.tool_id)
        data = events.RegistryRenewalDecided(
            contract_id=c.id,
            tool_id=c.tool_id,
            tool_name=tool.name if tool else "",
            term=row.term,
            instance_id=row.instance_id,
            outcome=row.outcome,
            status=row.status,
            late=row.late,
            notice_deadline=row.notice_deadline,
            decided_at=row.decided_at,
            effect=row.effect,
            next_term=row.next_term,
            auto_renewed_term=row.auto_renewed_term,
        )
        await uow.publish(events.RENEWAL_DECIDED, c.id, data)


def _term_of(context: dict[str, Any], current: int) -> int:
    term = context.get("term")
    if term is None:
        return current
    if type(term) is not int or term < 1:
        raise Invalid.on("data.context.term", "must be the term number the review was about", "invalid")
    return term


def _renewal_terms(context: dict[str, Any]) -> schemas.RenewIn:
    """The renegotiated terms a review carries in `context.renewal` (none: the term carries over)."""
    raw = context.get("renewal")
    if raw is None:
        return schemas.RenewIn()
    try:
        return schemas.RenewIn.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid.on(f"data.context.renewal.{where}".rstrip("."), first["msg"]) from exc


async def list_decisions(
    uow: UnitOfWork, *, limit: int, cursor: str | None, contract_id: str | None = None, late: bool | None = None
) -> schemas.DecisionPage:
    d = RenewalDecision
    query = select(d).order_by(d.updated_at.desc(), d.id.desc())
    if contract_id:
        query = query.where(d.contract_id == contract_id)
    if late is not None:
        query = query.where(d.late.is_(late))
    key = decode_cursor(cursor, cursors.instant, cursors.text)
    if key:
        at, last = key
        query = query.where((d.updated_at < at) | ((d.updated_at == at) & (d.id < last)))
    rows = list((await uow.scalars(query.limit(limit + 1))).all())
    page, next_cursor = page_of(rows, limit, lambda r: (r.updated_at.isoformat(), r.id))
    items = [
        schemas.DecisionOut(
            id=r.id,
            contract_id=r.contract_id,
            term=r.term,
            instance_id=r.instance_id,
            outcome=r.outcome,
            status=r.status,
            late=r.late,
            notice_deadline=r.notice_deadline,
            decided_at=r.decided_at,
            actor=r.actor,
            effect=r.effect,
            new_terms=r.new_terms,
            next_term=r.next_term,
            auto_renewed_term=r.auto_renewed_term,
        )
        for r in page
    ]
    return schemas.DecisionPage(items=items, next_cursor=next_cursor)
