"""What the registry service publishes and consumes.

Publishes (through the outbox, in the transaction of the change): registry.tool.created|updated|
lifecycle_changed, registry.contract.created|renewed|cancelled, and registry.renewal.due from the
durable renewal timer. Consumes nothing: tools and contracts are entered here, not derived.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.registry.stack import RENEWAL_TIMER, Stack
from shared.app import Runtime
from shared.consumer import Handler
from shared.timers import TimerHandler


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes."""
    return {}


def timer_handlers(runtime: Runtime) -> dict[str, TimerHandler]:
    """Timer kind -> handler; each runs in the transaction that marks the timer fired (once per term)."""
    stack: Stack = runtime.extras["stack"]

    async def renewal_due(session: AsyncSession, timer: Any) -> None:
        await stack.fire_renewal_due(session, timer)

    return {RENEWAL_TIMER: renewal_due}
