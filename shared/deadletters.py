"""Dead letters made visible: every event a consumer could not apply, with its reason, and what to do.

The consumer records each dead letter in the service's own `dead_letters` table (one row per event,
updated if the same event fails again) before it acknowledges the message, logs it and counts it
(`pitcrew_dead_letters_total`); it still copies the message to the `dlq.<service>` stream. An
operator (admin) lists them per service (`GET /v1/dead-letters`, through the gateway as
`/budget/v1/dead-letters` and so on), replays one or a range after a fix, or discards one with a
note. A replay runs the service's own handler through the consumer's inbox, so an event is applied
at most once however often it is replayed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any, Literal

import structlog
from fastapi import APIRouter, Depends, Query, Request
from prometheus_client import Counter, Gauge
from pydantic import BaseModel, Field
from sqlalchemy import Table, func, insert, select, update

from shared.db import Database, utcnow
from shared.errors import Conflict, DomainError, Invalid, NotFound
from shared.events import Envelope
from shared.http import JsonRoute
from shared.identity import Principal, require_roles
from shared.openapi import problems
from shared.pagination import DEFAULT_LIMIT, MAX_LIMIT, decode_cursor, instant, page_of

if TYPE_CHECKING:
    from shared.consumer import Consumer

log = structlog.get_logger("pitcrew.deadletters")

DEAD = Counter("pitcrew_dead_letters_total", "Events a consumer could not apply", ["service", "subject"])
OPEN = Gauge("pitcrew_dead_letters_open", "Dead letters waiting for an operator, at the last count", ["service"])

Status = Literal["open", "replayed", "discarded"]


async def record(
    db: Database,
    table: Table,
    *,
    event_id: str,
    subject: str,
    source: str | None,
    envelope: str,
    reason: str,
    attempts: int,
) -> None:
    """Store (or refresh) the dead letter of one event; raises if the database cannot take it."""
    now = utcnow()
    t = table
    async with db.transaction() as s:
        row = (await s.execute(select(t.c.id, t.c.attempts).where(t.c.event_id == event_id))).first()
        if row is None:
            await s.execute(
                insert(t).values(
                    id=str(uuid.uuid4()),
                    event_id=event_id,
                    subject=subject,
                    source=source,
                    envelope=envelope,
                    reason=reason,
                    attempts=attempts,
                    status="open",
                    first_failed_at=now,
                    last_failed_at=now,
                )
            )
        else:
            await s.execute(
                update(t)
                .where(t.c.id == row.id)
                .values(
                    reason=reason,
                    attempts=row.attempts + attempts,
                    status="open",
                    last_failed_at=now,
                    resolved_at=None,
                    resolved_by=None,
                )
            )


class DeadLetter(BaseModel):
    id: str
    event_id: str
    subject: str
    source: str | None
    reason: str
    attempts: int
    status: Status
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime
    resolved_at: dt.datetime | None
    resolved_by: str | None
    note: str | None
    envelope: dict[str, Any] | str = Field(description="the event as delivered (text when it could not be read)")


class DeadLetterList(BaseModel):
    items: list[DeadLetter]
    next_cursor: str | None


class Outcome(BaseModel):
    id: str
    status: Status
    outcome: Literal["applied", "already_applied", "failed", "discarded"]
    detail: str


class Outcomes(BaseModel):
    items: list[Outcome]


class ReplayRange(BaseModel):
    ids: list[str] | None = Field(default=None, max_length=1000, description="these dead letters")
    subject: str | None = Field(default=None, max_length=200, description="or every open one of this subject")
    since: dt.datetime | None = Field(default=None, description="... that last failed at or after this instant")
    until: dt.datetime | None = Field(default=None, description="... and before this one")
    limit: int = Field(default=500, ge=1, le=1000)


class Discard(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="why it is not replayed, for the next operator")


def _view(row: Any) -> DeadLetter:
    try:
        envelope: dict[str, Any] | str = Envelope.from_json(row.envelope).body()
    except (ValueError, TypeError):
        envelope = row.envelope
    return DeadLetter(
        id=row.id,
        event_id=row.event_id,
        subject=row.subject,
        source=row.source,
        reason=row.reason,
        attempts=row.attempts,
        status=row.status,
        first_failed_at=row.first_failed_at,
        last_failed_at=row.last_failed_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        note=row.note,
        envelope=envelope,
    )


class DeadLetters:
    """The operator's use cases on one service's dead letters."""

    def __init__(self, service: str, db: Database, table: Table, consumer: Consumer | None):
        self.service = service
        self.db = db
        self.table = table
        self.consumer = consumer

    async def page(self, status: Status | None, subject: str | None, limit: int, cursor: str | None) -> DeadLetterList:
        t = self.table
        q = select(t).order_by(t.c.last_failed_at.desc(), t.c.id.desc()).limit(limit + 1)
        if status:
            q = q.where(t.c.status == status)
        if subject:
            q = q.where(t.c.subject == subject)
        after = decode_cursor(cursor, instant, str)
        if after:
            at, last_id = after
            q = q.where((t.c.last_failed_at < at) | ((t.c.last_failed_at == at) & (t.c.id < last_id)))
        async with self.db.transaction(readonly=True) as s:
            rows = (await s.execute(q)).all()
            OPEN.labels(self.service).set(
                await s.scalar(select(func.count()).select_from(t).where(t.c.status == "open")) or 0
            )
        page, nxt = page_of(list(rows), limit, lambda r: (r.last_failed_at.isoformat(), r.id))
        return DeadLetterList(items=[_view(r) for r in page], next_cursor=nxt)

    async def get(self, dead_letter_id: str) -> Any:
        async with self.db.transaction(readonly=True) as s:
            row = (await s.execute(select(self.table).where(self.table.c.id == dead_letter_id))).first()
        if row is None:
            raise NotFound(f"No dead letter {dead_letter_id} in {self.service}.")
        return row

    async def replay(self, who: Principal, dead_letter_id: str) -> Outcome:
        row = await self.get(dead_letter_id)
        if row.status == "discarded":
            raise Conflict(f"Dead letter {row.id} was discarded ({row.note}); it is not replayed.")
        if self.consumer is None:
            raise Conflict(f"{self.service} consumes no events here; nothing can replay {row.subject}.")
        try:
            env = Envelope.from_json(row.envelope)
        except (ValueError, TypeError) as exc:
            raise Conflict(f"The message of dead letter {row.id} cannot be read ({exc}); discard it.") from exc
        handler = self.consumer.handler_for(env.type)
        if handler is None:
            raise Conflict(f"{self.service} has no handler for {env.type} any more; discard it.")
        try:
            applied = await self.consumer.handle(env, handler)
        except Exception as exc:  # noqa: BLE001 - the replay failed: record why, answer with it
            reason = f"{type(exc).__name__}: {exc.detail if isinstance(exc, DomainError) else exc}"
            await self._set(row.id, status="open", reason=reason, attempts=row.attempts + 1, last_failed_at=utcnow())
            log.warning(
                "dead_letter_replay_failed", service=self.service, id=row.id, subject=row.subject, reason=reason
            )
            return Outcome(id=row.id, status="open", outcome="failed", detail=reason)
        outcome: Literal["applied", "already_applied"] = "applied" if applied else "already_applied"
        await self._set(row.id, status="replayed", resolved_at=utcnow(), resolved_by=who.subject, note=outcome)
        log.info("dead_letter_replayed", service=self.service, id=row.id, subject=row.subject, outcome=outcome)
        return Outcome(
            id=row.id,
            status="replayed",
            outcome=outcome,
            detail="applied now" if applied else "the event had already been applied; nothing was done twice",
        )

    async def replay_range(self, who: Principal, body: ReplayRange) -> list[Outcome]:
        t = self.table
        if not body.ids and not body.subject and body.since is None:
            raise Invalid.on("ids", "name the dead letters: ids, or a subject and/or a time range")
        q = select(t.c.id).where(t.c.status == "open").order_by(t.c.first_failed_at, t.c.id).limit(body.limit)
        if body.ids:
            q = q.where(t.c.id.in_(body.ids))
        if body.subject:
            q = q.where(t.c.subject == body.subject)
        if body.since is not None:
            q = q.where(t.c.last_failed_at >= body.since)
        if body.until is not None:
            q = q.where(t.c.last_failed_at < body.until)
        async with self.db.transaction(readonly=True) as s:
            ids = list((await s.execute(q)).scalars())
        return [await self.replay(who, i) for i in ids]  # in the order they first failed

    async def discard(self, who: Principal, dead_letter_id: str, note: str) -> Outcome:
        row = await self.get(dead_letter_id)
        if row.status != "open":
            raise Conflict(f"Dead letter {row.id} is {row.status} already.")
        await self._set(row.id, status="discarded", resolved_at=utcnow(), resolved_by=who.subject, note=note)
        log.info("dead_letter_discarded", service=self.service, id=row.id, subject=row.subject, by=who.subject)
        return Outcome(id=row.id, status="discarded", outcome="discarded", detail=note)

    async def _set(self, dead_letter_id: str, **values: Any) -> None:
        async with self.db.transaction() as s:
            await s.execute(update(self.table).where(self.table.c.id == dead_letter_id).values(**values))


def router() -> APIRouter:
    """`/v1/dead-letters`: admins only, in every service that consumes events."""
    admin = require_roles()
    r = APIRouter(prefix="/v1/dead-letters", tags=["operations"], route_class=JsonRoute)

    def of(request: Request) -> DeadLetters:
        found: DeadLetters = request.app.state.runtime.dead_letters
        return found

    @r.get("", response_model=DeadLetterList, responses=problems(), summary="Events this service could not apply")
    async def list_dead_letters(
        request: Request,
        status: Status | None = "open",
        subject: str | None = Query(None, max_length=200),
        limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT),
        cursor: str | None = None,
        who: Principal = Depends(admin),
    ) -> DeadLetterList:
        return await of(request).page(status, subject, limit, cursor)

    @r.get("/{dead_letter_id}", response_model=DeadLetter, responses=problems(404))
    async def get_dead_letter(dead_letter_id: str, request: Request, who: Principal = Depends(admin)) -> DeadLetter:
        return _view(await of(request).get(dead_letter_id))

    @r.post(
        "/replay",
        response_model=Outcomes,
        responses=problems(409),
        summary="Replay the open dead letters named by ids, subject or time range, oldest first, each once",
    )
    async def replay_range(body: ReplayRange, request: Request, who: Principal = Depends(admin)) -> Outcomes:
        return Outcomes(items=await of(request).replay_range(who, body))

    @r.post(
        "/{dead_letter_id}/replay",
        response_model=Outcome,
        responses=problems(404, 409),
        summary="Run the event through the handler again (applied at most once)",
    )
    async def replay(dead_letter_id: str, request: Request, who: Principal = Depends(admin)) -> Outcome:
        return await of(request).replay(who, dead_letter_id)

    @r.post(
        "/{dead_letter_id}/discard",
        response_model=Outcome,
        responses=problems(404, 409),
        summary="Give up on the event, with a note saying why",
    )
    async def discard(dead_letter_id: str, body: Discard, request: Request, who: Principal = Depends(admin)) -> Outcome:
        return await of(request).discard(who, dead_letter_id, body.note)

    return r
