"""What the budget service publishes and consumes.

Published (through the outbox, in the transaction of the change; see
docs/events.md): budget.plan.activated, budget.line.created,
budget.allocation.posted, budget.transfer.posted,
budget.commitment.requested|committed|released|changed, budget.actual.posted,
budget.line.threshold_crossed.

Consumed: workflow.instance.approved|rejected for budget commitments, and
registry.contract.created|renewed|cancelled. The shared Consumer writes the
inbox row in the same transaction, so each handler applies its effect once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from services.budget.ledger import Ledger
from shared.app import Runtime
from shared.consumer import Handler
from shared.events import Envelope
from shared.identity import Principal


def actor(env: Envelope) -> Principal:
    """Who an event-driven change is recorded as: the publishing service, with full rights."""
    return Principal(subject=f"service:{env.source}", roles=frozenset({"admin"}), kind="service")


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    ledger: Ledger = runtime.extras["ledger"]  # set by main.create_app

    def decided(approved: bool) -> Handler:
        async def handle(s: AsyncSession, env: Envelope) -> None:
            subject = env.data.get("subject") or {}
            if subject.get("service") != "budget" or subject.get("type") != "commitment":
                return  # another service's approval
            await ledger.workflow_decided(s, actor(env), str(subject["id"]), approved)

        return handle

    async def contract(s: AsyncSession, env: Envelope) -> None:
        await ledger.contract_committed(s, actor(env), env.data)

    async def contract_cancelled(s: AsyncSession, env: Envelope) -> None:
        await ledger.contract_cancelled(s, actor(env), env.data)

    return {
        "workflow.instance.approved": decided(True),
        "workflow.instance.rejected": decided(False),
        "registry.contract.created": contract,
        "registry.contract.renewed": contract,
        "registry.contract.cancelled": contract_cancelled,
    }
