"""What the registry does on events and timers: the workflow's renewal-review outcomes act on the
contract (`reviews.py`); durable timers per contract term publish `registry.renewal.due` and
`registry.renewal.milestone`, and renew an auto-renewing term the day after an unanswered deadline.

The workflow's instance events are read with a small tolerant model of the fields used here (the
registry does not import the workflow, whose catalogue imports the registry's): a field the workflow
adds or a subject that is not a registry contract changes nothing.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.registry import contracts, discovery, milestones, renewals
from services.registry.container import Registry
from services.registry.reviews import Kind
from services.registry.schemas import BudgetStatus
from shared.app import Runtime
from shared.consumer import Handler
from shared.errors import Invalid
from shared.events import Envelope
from shared.identity import Principal
from shared.timers import TimerHandler
from shared.uow import UnitOfWork

M = TypeVar("M", bound=BaseModel)
REVIEWED = ("contract", "renewal")  # the subject types a renewal review decides on


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ReviewSubject(_Tolerant):
    type: str
    id: str
    service: str


class ReviewOutcome(_Tolerant):
    """What the registry reads of a `workflow.instance.*` event."""

    instance_id: str
    subject: ReviewSubject
    context: dict[str, Any] = {}
    finished_at: dt.datetime | None = None


class ActualPosted(_Tolerant):
    """What the registry reads of `budget.actual.posted`: the vendor an actual paid, and how much."""

    entry_id: str
    amount: Decimal
    currency: str
    date: dt.datetime | dt.date
    line_code: str | None = None
    external_ref: str | None = None
    vendor: str | None = None


class CommitmentAnswer(_Tolerant):
    """What the registry reads of a `budget.commitment.*` event: which commitment, and for a refusal why."""

    external_ref: str | None = Field(default=None, max_length=200)
    refusal_id: str | None = Field(default=None, max_length=100)
    reason: str | None = Field(default=None, max_length=10_000)
    code: str | None = Field(default=None, max_length=50)


# The budget's commitment events and what each says about the contract term it is about.
BUDGET_ANSWERS: dict[str, BudgetStatus] = {
    "budget.commitment.committed": "committed",
    "budget.commitment.requested": "pending_approval",
    "budget.commitment.released": "released",
    "budget.commitment.refused": "refused",
}


def _read(model: type[M], env: Envelope) -> M:
    try:
        return model.model_validate(env.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise Invalid.on("data." + ".".join(str(p) for p in err["loc"]), err["msg"]) from exc


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler: the outcomes of renewal reviews, and the budget's actuals (discovery)."""
    registry: Registry = runtime.domain

    async def actual(uow: UnitOfWork, env: Envelope) -> None:
        data = _read(ActualPosted, env)
        day = data.date.date() if isinstance(data.date, dt.datetime) else data.date
        await discovery.record_actual(
            uow,
            entry_id=data.entry_id,
            vendor=data.vendor,
            amount=data.amount,
            currency=data.currency,
            day=day,
            line_code=data.line_code,
            external_ref=data.external_ref,
        )

    def budget_answer(status: BudgetStatus) -> Handler:
        async def handle(uow: UnitOfWork, env: Envelope) -> None:
            data = _read(CommitmentAnswer, env)
            refused = status == "refused"
            at = dt.datetime.fromisoformat(env.time)
            await contracts.budget_said(
                uow,
                external_ref=data.external_ref,
                status=status,
                at=at if at.tzinfo else at.replace(tzinfo=dt.UTC),
                refusal_id=data.refusal_id if refused else None,
                reason=data.reason if refused else None,
                code=data.code if refused else None,
            )

        return handle

    def outcome(kind: Kind) -> Handler:
        async def handle(uow: UnitOfWork, env: Envelope) -> None:
            data = _read(ReviewOutcome, env)
            if data.subject.service != "registry" or data.subject.type not in REVIEWED:
                return  # another service's approval
            at = data.finished_at or dt.datetime.fromisoformat(env.time)
            who = Principal(subject=f"service:{env.source}", roles=frozenset({"admin"}), kind="service")
            await registry.reviews.on_outcome(
                uow,
                who,
                instance_id=data.instance_id,
                contract_id=data.subject.id,
                kind=kind,
                context=data.context,
                decided_at=at if at.tzinfo else at.replace(tzinfo=dt.UTC),
            )

        return handle

    kinds: tuple[Kind, ...] = ("approved", "rejected", "changes_requested", "resubmitted", "cancelled")
    return {
        **{f"workflow.instance.{kind}": outcome(kind) for kind in kinds},
        **{subject: budget_answer(status) for subject, status in BUDGET_ANSWERS.items()},
        "budget.actual.posted": actual,
    }


def timer_handlers(runtime: Runtime) -> dict[str, TimerHandler]:
    """Timer kind -> handler; each runs in the transaction that marks the timer fired (once per term)."""
    registry: Registry = runtime.domain

    async def renewal_due(uow: UnitOfWork, timer: Any) -> None:
        await renewals.publish_due(uow, timer, usage=registry.usage)

    async def milestone(uow: UnitOfWork, timer: Any) -> None:
        await registry.milestones.publish(uow, timer, usage=registry.usage)

    async def auto_renewal(uow: UnitOfWork, timer: Any) -> None:
        await registry.reviews.auto_renew(uow, timer)

    return {
        renewals.RENEWAL_TIMER: renewal_due,
        milestones.MILESTONE_TIMER: milestone,
        renewals.AUTO_RENEW_TIMER: auto_renewal,
    }
