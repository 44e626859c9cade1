"""Pooled PostgreSQL connections: pinged before use only after sitting idle."""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db import Database

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(
        os.environ.get("PITCREW_TEST_BACKEND", "sqlite") != "postgres", reason="needs PostgreSQL (make test-postgres)"
    ),
]


async def backend_pid(db: Database) -> int:
    async with db.transaction() as s:
        return (await s.execute(text("SELECT pg_backend_pid()"))).scalar_one()


async def terminate(url: str, pid: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_a_connection_killed_while_idle_is_replaced_before_anyone_uses_it(new_db) -> None:
    url = await new_db("ping")
    db = Database(url, pool_size=1, ping_after_idle=0.2)
    try:
        first = await backend_pid(db)
        await terminate(url, first)
        await asyncio.sleep(0.4)  # longer than ping_after_idle: the checkout pings, finds it dead
        second = await backend_pid(db)
        assert second != first
    finally:
        await db.dispose()


async def test_a_connection_reused_at_once_is_not_pinged_and_a_dead_one_fails_only_its_own_statement(new_db) -> None:
    url = await new_db("noping")
    db = Database(url, pool_size=1, ping_after_idle=3600)
    try:
        first = await backend_pid(db)
        await terminate(url, first)
        with pytest.raises(DBAPIError) as caught:
            await backend_pid(db)  # no ping: the dead connection is handed out and its statement fails
        assert caught.value.connection_invalidated
        assert await backend_pid(db) != first  # the pool reconnected for the next caller
    finally:
        await db.dispose()
