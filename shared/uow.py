"""The unit of work: one database transaction and everything a change does inside it.

Use cases take a `UnitOfWork` instead of a raw session: they read and write through it,
publish their events through it (into the outbox, in the same transaction, so nothing
is published for a change that rolled back), and keep what the change collected on it
(`state`), rather than in `session.info`. The app opens one per request, event or timer
(`Runtime.unit_of_work`, the idempotency wrapper, the consumer, the timer scheduler);
whatever opened it commits or rolls back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.engine import Connection, Result
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from shared import audit

if TYPE_CHECKING:
    from shared.contracts import EventSpec
    from shared.events import Envelope
    from shared.outbox import Outbox

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class UnitOfWork:
    """A transaction in progress: its session, the outbox it publishes to, and its collected state."""

    __slots__ = ("session", "outbox", "state")

    def __init__(self, session: AsyncSession, outbox: Outbox | None = None):
        self.session = session
        self.outbox = outbox
        # What the change collected for later steps of the same request (rows written, statements
        # run); a service keeps its keys in one place (e.g. budget's posting writer).
        self.state: dict[str, Any] = {}

    # -- reading and writing: the session's own calls, so use cases read like SQLAlchemy Core

    async def execute(self, statement: Any, params: Any = None, **kw: Any) -> Result[Any]:
        result: Result[Any] = await self.session.execute(statement, params, **kw)
        return result

    async def scalar(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return await self.session.scalar(statement, params, **kw)

    async def scalars(self, statement: Any, params: Any = None, **kw: Any) -> Any:
        return await self.session.scalars(statement, params, **kw)

    async def get(self, entity: type[T], ident: Any, **kw: Any) -> T | None:
        return await self.session.get(entity, ident, **kw)

    def add(self, instance: object) -> None:
        self.session.add(instance)

    def add_all(self, instances: Any) -> None:
        self.session.add_all(instances)

    async def flush(self) -> None:
        await self.session.flush()

    async def connection(self) -> AsyncConnection:
        return await self.session.connection()

    def begin_nested(self) -> Any:
        return self.session.begin_nested()

    def get_bind(self) -> Connection | Any:
        return self.session.get_bind()

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`: for the one small function per rule that must differ."""
        return str(self.session.get_bind().dialect.name)

    @property
    def bind(self) -> Any:
        return self.session.bind

    @property
    def info(self) -> dict[Any, Any]:
        """The session's own info (infrastructure keeps its flags there; use cases use `state`)."""
        return self.session.info

    # -- the audit trail

    async def audit(self, entity: str, entity_id: str, *, action: str, before: Any = None, after: Any = None) -> None:
        """Record a change that publishes no event (an event records its own audit entry)."""
        if self.outbox is None or self.outbox.audit is None:
            return
        await audit.record(
            self.session,
            self.outbox.audit,
            action=action,
            entity=entity,
            entity_id=entity_id,
            before=before,
            after=after,
        )

    # -- events

    async def publish(
        self, spec: EventSpec[M], subject_id: str, data: M | dict[str, Any], *, correlation_id: str | None = None
    ) -> Envelope:
        """Validate `data` against the event's model and write it to the outbox in this transaction."""
        if self.outbox is None:
            raise RuntimeError("this unit of work has no outbox to publish to")
        return await self.outbox.add(self.session, spec.subject, subject_id, spec.dump(data), correlation_id)
