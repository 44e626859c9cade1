"""What the budget does on other services' events: workflow decisions approve or release the
commitment they were about, or decide a bottom-up request (approval allocates its amounts); registry
contract terms commit (and cancellations release) their cost.

The shared Consumer writes the inbox row in the same transaction, so each handler applies its
effect once; data that does not match its model is dead-lettered with the reason. A contract term's
commitment the budget refuses (no money under block, no such line, a closed month) is a business
answer, not a broken message: it is kept as a refusal (services.budget.refusals), never dead-lettered.
"""

from __future__ import annotations

from services.budget import integrations, refusals, requests
from services.budget.container import Budget
from services.budget.postings import Raced
from services.registry import events as registry
from services.workflow import events as workflow
from shared.app import Runtime
from shared.consumer import Handler
from shared.errors import DomainError
from shared.events import Envelope
from shared.identity import Principal
from shared.uow import UnitOfWork


def actor(env: Envelope) -> Principal:
    """Who an event-driven change is recorded as: the publishing service, with full rights."""
    return Principal(subject=f"service:{env.source}", roles=frozenset({"admin"}), kind="service")


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    budget: Budget = runtime.domain

    def decided(outcome: requests.Outcome) -> Handler:
        spec = workflow.INSTANCE_EVENTS[outcome]

        async def handle(uow: UnitOfWork, env: Envelope) -> None:
            data = spec.read(env.data)
            subject = data.subject
            if subject.service != "budget":
                return  # another service's approval
            if subject.type == "budget_request":
                await requests.decided(
                    uow,
                    actor(env),
                    postings=budget.postings,
                    request_id=subject.id,
                    outcome=outcome,
                    instance_id=data.instance_id,
                    actor=getattr(data, "decided_by", None),
                    comment=getattr(data, "comment", None),
                )
            elif subject.type == "commitment" and outcome != "cancelled":
                await integrations.workflow_decided(
                    uow, actor(env), postings=budget.postings, commitment_id=subject.id, approved=outcome == "approved"
                )

        return handle

    async def contract(uow: UnitOfWork, env: Envelope) -> None:
        term = registry.CONTRACT_CREATED.read(env.data)  # created and renewed share the model
        who = actor(env)
        try:
            async with uow.begin_nested():  # a refusal undoes only what the attempt wrote
                await integrations.contract_committed(uow, who, postings=budget.postings, term=term)
        except Raced:
            raise  # a race, not a refusal: redelivered and decided again
        except DomainError as refused:
            await refusals.record(uow, who, refused, **refusals.contract_request(term))

    async def contract_cancelled(uow: UnitOfWork, env: Envelope) -> None:
        term = registry.CONTRACT_CANCELLED.read(env.data)
        await integrations.contract_cancelled(uow, actor(env), postings=budget.postings, term=term)

    return {
        workflow.INSTANCE_APPROVED.subject: decided("approved"),
        workflow.INSTANCE_REJECTED.subject: decided("rejected"),
        workflow.INSTANCE_CANCELLED.subject: decided("cancelled"),
        registry.CONTRACT_CREATED.subject: contract,
        registry.CONTRACT_RENEWED.subject: contract,
        registry.CONTRACT_CANCELLED.subject: contract_cancelled,
    }
