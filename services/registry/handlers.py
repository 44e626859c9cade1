"""What the registry does on events and timers: it consumes no events; one durable timer per
contract term publishes `registry.renewal.due`."""

from __future__ import annotations

from typing import Any

from services.registry import renewals
from services.registry.container import Registry
from shared.app import Runtime
from shared.consumer import Handler
from shared.timers import TimerHandler
from shared.uow import UnitOfWork


def handlers(runtime: Runtime) -> dict[str, Handler]:
    """Subject -> handler for the events this service consumes: none."""
    return {}


def timer_handlers(runtime: Runtime) -> dict[str, TimerHandler]:
    """Timer kind -> handler; each runs in the transaction that marks the timer fired (once per term)."""
    registry: Registry = runtime.domain

    async def renewal_due(uow: UnitOfWork, timer: Any) -> None:
        await renewals.publish_due(uow, timer, usage=registry.usage)

    return {renewals.RENEWAL_TIMER: renewal_due}
