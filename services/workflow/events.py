"""What the workflow service consumes (docs/events.md); it publishes through the engine's outbox calls.

Each handler runs inside the consumer's transaction with the inbox row, so a
redelivered event starts no second instance.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.workflow.api import engine_of
from shared.app import Runtime
from shared.consumer import Handler
from shared.events import Envelope

FALLBACK = {"budget.commitment.requested": "budget-approval", "registry.renewal.due": "tool-renewal"}


def commitment_context(data: dict[str, Any]) -> dict[str, Any]:
    """The event's data with the line's dimensions flattened in (region, channel, ...) and kept as well."""
    dims = data.get("dimensions") or {}
    return {**{k: v for k, v in dims.items() if v is not None}, **data}


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    engine = engine_of(runtime)

    async def start_for(s: AsyncSession, env: Envelope, context: dict[str, Any], subject: dict[str, str],
                        requester: str) -> None:
        definition = await engine.match_definition(s, env.type, context)
        if definition is None:
            definition = await engine.get_definition(s, FALLBACK[env.type])
        await engine.start(s, definition, subject, context, requester, env.correlation_id or env.id)

    async def commitment_requested(s: AsyncSession, env: Envelope) -> None:
        data = env.data
        await start_for(
            s, env, commitment_context(data),
            {"type": "commitment", "id": str(data.get("commitment_id") or env.subject_id), "service": "budget"},
            str(data.get("requested_by") or "service:budget"),
        )

    async def renewal_due(s: AsyncSession, env: Envelope) -> None:
        data = env.data
        await start_for(
            s, env, dict(data),
            {"type": "contract", "id": str(data.get("contract_id") or env.subject_id), "service": "registry"},
            "service:registry",
        )

    return {"budget.commitment.requested": commitment_requested, "registry.renewal.due": renewal_due}


def timer_handlers(runtime: Runtime) -> dict[str, Any]:
    """Timer kind -> handler: SLA warning and breach, fired once in the scheduler's transaction."""
    from services.workflow.engine import BREACH, WARNING

    engine = engine_of(runtime)
    return {WARNING: engine.on_warning, BREACH: engine.on_breach}
