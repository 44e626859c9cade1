"""The budget's domain objects, built once per process from its settings (`ServiceSpec.build`).

Routes reach them through the `domain` dependency, the event handlers through `runtime.domain`.
What differs between databases is chosen here, once: the posting writer (services.budget.writers).
Everything else is plain functions of the sub-domain modules taking a unit of work.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from services.budget.postings import Postings
from services.budget.settings import Settings
from services.budget.writers import PgWriter, SqliteWriter
from shared.app import Runtime
from shared.db import Database
from shared.outbox import Outbox


@dataclass(frozen=True)
class Budget:
    postings: Postings


def for_database(db: Database, outbox: Outbox, *, group_commit: int = 2) -> Budget:
    """The domain objects for `db` (the service builds them from its runtime; benchmarks and tests too)."""
    writer = SqliteWriter(outbox) if db.is_sqlite else PgWriter(outbox, group_commit=group_commit)
    return Budget(postings=Postings(writer, outbox.source))


def build(runtime: Runtime) -> Budget:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    return for_database(runtime.db, runtime.outbox, group_commit=settings.group_commit_statements)


async def domain(request: Request) -> Budget:
    """FastAPI dependency: the budget's domain objects (async and request-only, as the fast lane needs)."""
    budget: Budget = request.app.state.runtime.domain
    return budget
