"""What the registry does on events and timers: it consumes no events; durable timers per contract
term publish `registry.renewal.due` and `registry.renewal.milestone`."""

from __future__ import annotations

from typing import Any

from services.registry import milestones, renewals
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

    async def milestone(uow: UnitOfWork, timer: Any) -> None:
        await registry.milestones.publish(uow, timer, usage=registry.usage)

    return {renewals.RENEWAL_TIMER: renewal_due, milestones.MILESTONE_TIMER: milestone}
