"""What notify does on events: tell the people each event concerns, and forward it to the partner
subscriptions that want it. One handler per stream (`budget.>`, ...): a JetStream consumer may not
filter on overlapping subjects, and partners may subscribe to any event."""

from __future__ import annotations

from services.notify import events, messages, subscriptions
from services.notify.container import Notify
from shared.app import Runtime
from shared.consumer import Handler
from shared.events import Envelope
from shared.uow import UnitOfWork


def handlers(runtime: Runtime) -> dict[str, Handler]:
    notify: Notify = runtime.domain

    async def on_event(uow: UnitOfWork, env: Envelope) -> None:
        route = messages.route(env.type)
        told = await route(notify.composer, uow, env) if route is not None else 0
        forwarded = await subscriptions.fan_out(uow, env)
        if told:
            notify.outbound.wake()
        if forwarded:
            notify.hooks.wake()

    return dict.fromkeys(events.STREAM_PATTERNS, on_event)
