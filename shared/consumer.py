"""Idempotent JetStream consumers.

One durable pull consumer per (service, stream): replicas of a service share
it, so each event is handled once per service. The handler's effect and the
inbox row (consumer, event id) commit in one transaction, so a redelivery
finds the row and does nothing. A message that keeps failing goes to
`dlq.<service>` after `max_deliver` attempts; a domain error (the event can
never apply) goes there at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter
from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError

from shared import deadletters
from shared.bus import Bus
from shared.context import Actor, actor_var
from shared.db import Database, utcnow
from shared.errors import DomainError
from shared.events import Envelope, stream_for
from shared.outbox import Outbox
from shared.tasks import cancel_and_wait
from shared.uow import UnitOfWork

log = structlog.get_logger("pitcrew.consumer")

Handler = Callable[[UnitOfWork, Envelope], Awaitable[None]]

HANDLED = Counter("pitcrew_events_handled_total", "Events handled", ["service", "subject", "outcome"])


class Consumer:
    def __init__(
        self,
        service: str,
        db: Database,
        inbox: Table,
        bus: Bus,
        handlers: dict[str, Handler],
        *,
        max_deliver: int = 5,
        ack_wait: float = 30.0,
        batch: int = 50,
        outbox: Outbox | None = None,
        majors: Callable[[str], frozenset[int]] | None = None,
        dead_letters: Table | None = None,
    ):
        self.service = service
        self.db = db
        self.inbox = inbox
        self.bus = bus
        self.handlers = handlers
        self.max_deliver = max_deliver
        self.ack_wait = ack_wait
        self.batch = batch
        self.outbox = outbox
        # Where dead letters are recorded (shared.deadletters); without it they only go to the DLQ stream.
        self.dead_letters = dead_letters
        # subject -> the envelope schema_version majors its handler understands (default: 1)
        self.majors = majors or (lambda subject: frozenset({1}))
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        by_stream: dict[str, list[str]] = {}
        for subject in self.handlers:
            by_stream.setdefault(stream_for(subject), []).append(subject)
        for stream, subjects in by_stream.items():
            self._tasks.append(
                asyncio.create_task(self._run_stream(stream, subjects), name=f"{self.service}-consume-{stream}")
            )

    async def stop(self) -> None:
        await asyncio.gather(*(cancel_and_wait(task) for task in self._tasks))
        self._tasks = []

    async def _run_stream(self, stream: str, subjects: list[str]) -> None:
        sub = None
        while True:
            try:
                if not self.bus.connected:
                    await self.bus.wait_connected(timeout=1.0)
                    sub = None
                    continue
                if sub is None:
                    sub = await self._subscribe(stream, subjects)
                try:
                    msgs = await sub.fetch(batch=self.batch, timeout=1.0)
                except NatsTimeout:
                    continue
                await self._process_all(msgs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - resubscribe after any transport failure
                log.warning("consumer_error", service=self.service, stream=stream, error=repr(exc))
                sub = None
                await asyncio.sleep(0.5)

    async def _subscribe(self, stream: str, subjects: list[str]) -> Any:
        config = ConsumerConfig(
            durable_name=self.service,
            name=self.service,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_ack_pending=1000,
            filter_subjects=sorted(subjects) if len(subjects) > 1 else None,
            filter_subject=subjects[0] if len(subjects) == 1 else None,
        )
        await self.bus.js.add_consumer(stream, config=config)
        return await self.bus.js.pull_subscribe_bind(durable=self.service, stream=stream)

    async def _process_all(self, msgs: list[Any]) -> None:
        """A fetched batch: the events this service handles are applied in one transaction, one
        savepoint each (a commit per event was most of the cost of a burst); the rest one by one."""
        todo: list[tuple[Any, Envelope, Handler]] = []
        for msg in msgs:
            work = await self._triage(msg)
            if work is not None:
                todo.append((msg, *work))
        if len(todo) == 1:
            await self._apply(*todo[0])
        elif todo:
            await self._apply_batch(todo)

    async def _triage(self, msg: Any) -> tuple[Envelope, Handler] | None:
        """The event and its handler, or None when the message was settled here (acked or dead-lettered)."""
        try:
            env = Envelope.from_json(msg.data)
        except (ValueError, json.JSONDecodeError, TypeError) as exc:
            await self._dead_letter(msg, None, f"unreadable envelope: {exc}")
            return None
        handler = self.handler_for(env.type)
        if handler is None:
            await msg.ack()
            return None
        known = self.majors(env.type)
        if env.schema_version not in known:
            await self._dead_letter(
                msg,
                env,
                f"schema_version {env.schema_version} of {env.type} is not one this consumer reads "
                f"({', '.join(str(v) for v in sorted(known))}); upgrade {self.service} before replaying it",
            )
            return None
        return env, handler

    async def _process(self, msg: Any) -> None:
        work = await self._triage(msg)
        if work is not None:
            await self._apply(msg, *work)

    async def _apply_batch(self, todo: list[tuple[Any, Envelope, Handler]]) -> None:
        """Apply each event in its own savepoint of one transaction, then settle each message.

        An event whose handler fails rolls back only its savepoint and is settled as it would be
        alone (dead letter or retry). If the transaction itself fails, nothing of the batch was
        applied and each event is applied again alone: the inbox keeps every effect exactly once."""
        t = self.inbox
        outcomes: dict[str, BaseException | bool] = {}
        try:
            async with self.db.transaction() as session:
                ids = [env.id for _, env, _ in todo]
                seen = set(
                    (
                        await session.scalars(
                            select(t.c.event_id).where(t.c.consumer == self.service, t.c.event_id.in_(ids))
                        )
                    ).all()
                )
                for _, env, handler in todo:
                    if env.id in seen or env.id in outcomes:
                        outcomes.setdefault(env.id, False)
                        continue
                    actor_var.set(_actor_of(env))
                    try:
                        async with session.begin_nested():
                            await session.execute(insert(t).values(**self._inbox_row(env)))
                            await handler(UnitOfWork(session, self.outbox), env)
                        outcomes[env.id] = True
                    except IntegrityError as exc:
                        outcomes[env.id] = exc if not await self._recorded(session, env) else False
                    except Exception as exc:  # noqa: BLE001 - settled below, like a lone event's failure
                        outcomes[env.id] = exc
        except Exception as exc:  # noqa: BLE001 - the batch did not commit: each event again, alone
            log.warning("consumer_batch_failed", service=self.service, events=len(todo), error=repr(exc))
            for msg, env, handler in todo:
                await self._apply(msg, env, handler)
            return
        for msg, env, _ in todo:
            outcome = outcomes[env.id]
            if isinstance(outcome, bool):
                await msg.ack()
                HANDLED.labels(self.service, env.type, "applied" if outcome else "duplicate").inc()
            else:
                await self._settle_failure(msg, env, outcome)

    async def _recorded(self, session: Any, env: Envelope) -> bool:
        """After a unique violation: did a concurrent replica record this event (then it is done)?"""
        t = self.inbox
        found = await session.scalar(select(t.c.event_id).where(t.c.consumer == self.service, t.c.event_id == env.id))
        return found is not None

    def _inbox_row(self, env: Envelope) -> dict[str, Any]:
        return {"consumer": self.service, "event_id": env.id, "subject": env.type, "processed_at": utcnow()}

    async def _apply(self, msg: Any, env: Envelope, handler: Handler) -> None:
        try:
            applied = await self.handle(env, handler)
            await msg.ack()
            HANDLED.labels(self.service, env.type, "applied" if applied else "duplicate").inc()
        except Exception as exc:  # noqa: BLE001 - settled as a dead letter or a retry
            await self._settle_failure(msg, env, exc)

    async def _settle_failure(self, msg: Any, env: Envelope, exc: BaseException) -> None:
        if isinstance(exc, DomainError):
            await self._dead_letter(msg, env, f"{type(exc).__name__}: {exc.detail}")
        else:
            delivered = msg.metadata.num_delivered
            log.warning(
                "event_handler_failed",
                service=self.service,
                subject=env.type,
                id=env.id,
                attempt=delivered,
                error=repr(exc),
            )
            if delivered >= self.max_deliver:
                await self._dead_letter(msg, env, repr(exc))
            else:
                HANDLED.labels(self.service, env.type, "retry").inc()
                await msg.nak(delay=min(0.2 * 2**delivered, 10.0))

    def handler_for(self, subject: str) -> Handler | None:
        if subject in self.handlers:
            return self.handlers[subject]
        for pattern, handler in self.handlers.items():
            if _matches(pattern, subject):
                return handler
        return None

    async def handle(self, env: Envelope, handler: Handler) -> bool:
        """Apply `handler` once: returns False when this event was handled before."""
        t = self.inbox
        try:
            # What the handler changes is recorded as the publishing service's doing, tied to the event.
            actor_var.set(_actor_of(env))
            async with self.db.transaction() as session:
                s = UnitOfWork(session, self.outbox)
                seen = await s.scalar(select(t.c.event_id).where(t.c.consumer == self.service, t.c.event_id == env.id))
                if seen:
                    return False
                try:
                    await s.execute(insert(t).values(**self._inbox_row(env)))
                except IntegrityError as exc:
                    # A concurrent replica recorded it first (primary key): it is done there.
                    raise _AlreadyHandled from exc
                await handler(s, env)
            return True
        except _AlreadyHandled:
            return False

    async def _dead_letter(self, msg: Any, env: Envelope | None, reason: str) -> None:
        subject = env.type if env else msg.subject
        if self.dead_letters is not None:
            try:
                await deadletters.record(
                    self.db,
                    self.dead_letters,
                    event_id=env.id if env else f"unreadable:{msg.subject}:{msg.metadata.sequence.stream}",
                    subject=subject[:200],
                    source=env.source[:100] if env else None,
                    envelope=msg.data.decode("utf-8", errors="replace"),
                    reason=reason,
                    attempts=msg.metadata.num_delivered,
                )
            except Exception as exc:  # noqa: BLE001 - not recorded: keep the message, never lose it
                log.warning("dead_letter_not_recorded", service=self.service, subject=subject, error=repr(exc))
                await msg.nak(delay=5.0)
                return
        log.error("event_dead_lettered", service=self.service, subject=subject, reason=reason)
        deadletters.DEAD.labels(self.service, subject).inc()
        HANDLED.labels(self.service, subject, "dead_letter").inc()
        headers = {"Pitcrew-Original-Subject": msg.subject, "Pitcrew-Reason": reason[:500]}
        if env is not None:
            headers["Nats-Msg-Id"] = f"dlq-{self.service}-{env.id}"
        await self.bus.js.publish(f"dlq.{self.service}", msg.data, headers=headers)
        await msg.ack()


class _AlreadyHandled(Exception):
    pass


def _actor_of(env: Envelope) -> Actor:
    """What a handler changes is recorded as the publishing service's doing, tied to the event."""
    return Actor(f"service:{env.source}"[:200], "service", env.correlation_id or env.id, "EVENT", env.type)


def _matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)
