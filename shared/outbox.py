"""Transactional outbox: events are rows written in the caller's transaction.

A relay publishes them to JetStream with `Nats-Msg-Id` = event id (JetStream
drops a repeat inside its duplicate window) and marks them sent. While NATS is
down rows wait; a rolled-back transaction leaves no row, so nothing is
published for a change that did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import Any

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import Table, func, insert, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shared import audit
from shared.bus import Bus
from shared.contracts import Catalogue
from shared.db import Database, utcnow
from shared.events import Envelope, new_event
from shared.tasks import cancel_and_wait

log = structlog.get_logger("pitcrew.outbox")

PUBLISHED = Counter("pitcrew_outbox_published_total", "Events published from the outbox", ["service"])
PENDING = Gauge("pitcrew_outbox_pending", "Events waiting in the outbox at the last relay pass", ["service"])

_NOTIFY_KEY = "pitcrew_outbox_notify"


@sa_event.listens_for(Session, "after_commit")
def _wake_relay_after_commit(session: Session) -> None:
    notify = session.info.pop(_NOTIFY_KEY, None)
    if notify is not None:
        notify()


@sa_event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_NOTIFY_KEY, None)


class Outbox:
    """Writes events into the service's outbox table inside the caller's transaction."""

    def __init__(self, table: Table, source: str, catalogue: Catalogue | None = None, audit: Table | None = None):
        self.table = table
        # With an audit table, each event also writes its audit entry (shared.audit), in the same transaction.
        self.audit = audit
        self.source = source
        # With a catalogue, every event is checked against it: an unknown subject or data that does
        # not match its model is a bug, and the change rolls back instead of publishing it.
        self.catalogue = catalogue
        self.relay: OutboxRelay | None = None

    async def add(
        self,
        session: AsyncSession,
        type: str,
        subject_id: str,
        data: dict[str, Any],
        correlation_id: str | None = None,
    ) -> Envelope:
        if self.catalogue is not None:
            data = self.catalogue.check(type, data)
        env = new_event(type, self.source, subject_id, data, correlation_id)
        await self.add_envelope(session, env)
        return env

    async def add_envelope(self, session: AsyncSession, env: Envelope) -> None:
        now = utcnow()
        await session.execute(insert(self.table).values(**self.row(env, now)))
        if self.audit is not None:
            await session.execute(insert(self.audit).values(**self.audit_row(env, now)))
        self.wake_after_commit(session)

    @staticmethod
    def audit_row(env: Envelope, now: Any) -> dict[str, Any]:
        """The audit entry of an event, for a caller that writes rows in its own statement."""
        return audit.row(env.type, audit.entity_of(env.type), env.subject_id, None, env.data, now)

    @staticmethod
    def row(env: Envelope, now: Any) -> dict[str, Any]:
        """The outbox row of an event, for a caller that writes rows in its own statement."""
        return {"id": env.id, "subject": env.type, "payload": env.to_json(), "created_at": now, "attempts": 0}

    async def backlog(self, db: Database) -> tuple[int, dt.datetime | None]:
        """How many events wait to be published, and since when the oldest."""
        t = self.table
        async with db.transaction(readonly=True) as s:
            row = (await s.execute(select(func.count(), func.min(t.c.created_at)).where(t.c.sent_at.is_(None)))).one()
        return int(row[0]), row[1]

    def wake_after_commit(self, session: AsyncSession) -> None:
        """Have the relay publish as soon as `session` commits (a caller writing rows itself calls this)."""
        if self.relay is not None:
            session.info[_NOTIFY_KEY] = self.relay.notify


class OutboxRelay:
    """Publishes unsent outbox rows in order; backs off while NATS is unreachable."""

    def __init__(self, db: Database, outbox: Outbox, bus: Bus, *, poll_seconds: float = 0.5, batch: int = 500):
        self.db = db
        self.table = outbox.table
        self.bus = bus
        self.poll_seconds = poll_seconds
        self.batch = batch
        self.service = outbox.source
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        outbox.relay = self

    def notify(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"{self.service}-outbox-relay")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def run(self) -> None:
        backoff = self.poll_seconds
        while True:
            try:
                if not self.bus.connected:
                    await self.bus.wait_connected(timeout=self.poll_seconds)
                    continue
                sent = await self.drain_once()
                backoff = self.poll_seconds
                if sent >= self.batch:
                    continue
                self._wake.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the
                # cancellation that stop() sends, and the relay would never end.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await self._wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep relaying; the rows stay unsent
                log.warning("outbox_relay_error", service=self.service, error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def drain_once(self) -> int:
        """Publish one batch of unsent rows; returns how many were published."""
        t = self.table
        query = select(t.c.seq, t.c.id, t.c.subject, t.c.payload).where(t.c.sent_at.is_(None)).order_by(t.c.seq)
        query = query.limit(self.batch)
        if self.db.is_sqlite:
            # SQLite has one writer: do not hold the write lock while talking to NATS.
            async with self.db.transaction(readonly=True) as s:
                rows = (await s.execute(query)).all()
            published, error = await self._publish(rows)
            async with self.db.transaction() as s:
                await self._mark(s, published, rows, error)
        else:
            # Several replicas: each claims its own rows.
            async with self.db.transaction() as s:
                rows = (await s.execute(query.with_for_update(skip_locked=True))).all()
                published, error = await self._publish(rows)
                await self._mark(s, published, rows, error)
        PENDING.labels(self.service).set(len(rows) - len(published))
        if error is not None:
            raise error
        return len(published)

    async def _publish(self, rows: Sequence[Any]) -> tuple[list[int], Exception | None]:
        published: list[int] = []
        for row in rows:
            try:
                await self.bus.js.publish(row.subject, row.payload.encode(), headers={"Nats-Msg-Id": row.id})
            except Exception as exc:  # noqa: BLE001 - stop at the first failure to keep order
                return published, exc
            published.append(row.seq)
        PUBLISHED.labels(self.service).inc(len(published))
        return published, None

    async def _mark(self, s: AsyncSession, published: list[int], rows: Sequence[Any], error: Exception | None) -> None:
        t = self.table
        if published:
            await s.execute(update(t).where(t.c.seq.in_(published)).values(sent_at=utcnow()))
        if error is not None and len(published) < len(rows):
            failed = rows[len(published)].seq
            await s.execute(
                update(t).where(t.c.seq == failed).values(attempts=t.c.attempts + 1, last_error=str(error)[:500])
            )
