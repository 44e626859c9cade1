"""What the budget does on other services' events: workflow decisions approve or release the
commitment they were about; registry contract terms commit (and cancellations release) their cost.

The shared Consumer writes the inbox row in the same transaction, so each handler applies its
effect once; data that does not match its model is dead-lettered with the reason.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from services.budget import integrations
from services.budget.container import Budget
from services.registry import events as registry
from shared.app import Runtime
from shared.consumer import Handler
from shared.events import Envelope
from shared.identity import Principal
from shared.uow import UnitOfWork


class WorkflowSubject(BaseModel):
    """What a workflow instance was about (workflow publishes no catalogue of its own yet)."""

    model_config = ConfigDict(extra="ignore")

    service: str | None = None
    type: str | None = None
    id: str | int | None = None


class WorkflowDecision(BaseModel):
    """The part of workflow.instance.approved|rejected the budget reads."""

    model_config = ConfigDict(extra="ignore")

    subject: WorkflowSubject | None = None


def actor(env: Envelope) -> Principal:
    """Who an event-driven change is recorded as: the publishing service, with full rights."""
    return Principal(subject=f"service:{env.source}", roles=frozenset({"admin"}), kind="service")


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    budget: Budget = runtime.domain

    def decided(approved: bool) -> Handler:
        async def handle(uow: UnitOfWork, env: Envelope) -> None:
            subject = WorkflowDecision.model_validate(env.data).subject
            if subject is None or subject.service != "budget" or subject.type != "commitment" or subject.id is None:
                return  # another service's approval
            await integrations.workflow_decided(
                uow, actor(env), postings=budget.postings, commitment_id=str(subject.id), approved=approved
            )

        return handle

    async def contract(uow: UnitOfWork, env: Envelope) -> None:
        term = registry.CONTRACT_CREATED.read(env.data)  # created and renewed share the model
        await integrations.contract_committed(uow, actor(env), postings=budget.postings, term=term)

    async def contract_cancelled(uow: UnitOfWork, env: Envelope) -> None:
        term = registry.CONTRACT_CANCELLED.read(env.data)
        await integrations.contract_cancelled(uow, actor(env), postings=budget.postings, term=term)

    return {
        "workflow.instance.approved": decided(True),
        "workflow.instance.rejected": decided(False),
        registry.CONTRACT_CREATED.subject: contract,
        registry.CONTRACT_RENEWED.subject: contract,
        registry.CONTRACT_CANCELLED.subject: contract_cancelled,
    }
