"""Bounded reads for the reports that read the whole stack (the graph, its analysis, the export):
at most a limit of rows (a 422 beyond it, before holding them all), handed to the event loop a
partition at a time so that other requests and the timers keep running while they arrive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from shared.errors import TooMuchWork
from shared.uow import UnitOfWork

PARTITION = 2_000  # rows handed to the event loop at a time


async def at_most(uow: UnitOfWork, query: Select[*tuple[Any, ...]], most: int, what: str, hint: str) -> list[Any]:
    """The rows of `query`, at most `most` of them, or a 422 saying there are more `what`."""
    result = await uow.session.stream(query.limit(most + 1))
    rows: list[Any] = []
    try:
        async for part in result.partitions(PARTITION):
            rows.extend(part)
            if len(rows) > most:
                raise TooMuchWork(
                    f"The stack has more than {most:,} {what}, the most one request reads; {hint}.", limit=most
                )
    finally:
        await result.close()
    return rows
