"""The one-hop SQLite driver: the same results, errors and transactions as SQLAlchemy's aiosqlite."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Column, Date, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError

from shared import sqlite_driver
from shared.db import Database, JSONType, UTCDateTime, async_url
from shared.sqlite_driver import Inserts, OneHopConnection, on_thread

meta = MetaData()
things = Table(
    "things",
    meta,
    Column("id", String(36), primary_key=True),
    Column("day", Date, nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("doc", JSONType(), nullable=False),
    Column("n", Integer, nullable=False, default=7),
)


@pytest.fixture
async def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/t.db", pool_size=2)
    async with database.engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    yield database
    await database.dispose()


def test_sqlite_urls_take_the_one_hop_driver() -> None:
    assert async_url("sqlite:///x.db") == f"sqlite+{sqlite_driver.NAME}:///x.db"


async def test_statements_answer_as_the_driver_does(db: Database) -> None:
    async with db.transaction() as s:
        conn = await s.connection()
        assert isinstance((await conn.get_raw_connection()).dbapi_connection, OneHopConnection)
        r = await s.execute(
            text("INSERT INTO things (id, day, at, doc, n) VALUES ('a', '2027-01-02', '2027-01-02 03:04:05', '{}', 1)")
        )
        assert r.rowcount == 1
        await s.execute(
            insert(things),
            [
                dict(id=f"m{i}", day=dt.date(2027, 1, i + 1), at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC), doc={})
                for i in range(3)
            ],
        )
        rows = (await s.execute(text("UPDATE things SET n = n + 1 WHERE id LIKE 'm%' RETURNING id, n"))).all()
        assert sorted(rows) == [("m0", 8), ("m1", 8), ("m2", 8)]
        assert (await s.execute(select(things.c.n).where(things.c.id == "a"))).scalar_one() == 1
    async with db.transaction(readonly=True) as s:
        assert (await s.execute(text("SELECT count(*) FROM things"))).scalar_one() == 4


async def test_a_failed_statement_is_sqlalchemys_error_and_its_transaction_is_undone(db: Database) -> None:
    row = dict(id="x", day=dt.date(2027, 1, 1), at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC), doc={})
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(insert(things), row)
            await s.execute(insert(things), row)
    async with db.transaction(readonly=True) as s:
        assert (await s.execute(text("SELECT count(*) FROM things"))).scalar_one() == 0


async def test_rows_written_on_the_thread_read_back_as_sqlalchemys_insert_writes_them(db: Database) -> None:
    at = dt.datetime(2027, 3, 4, 5, 6, 7, 890123, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    doc = {"amount": str(Decimal("12.30")), "tags": ["a", "é"], "nested": {"k": None}}
    async with db.transaction() as s:
        await s.execute(insert(things), dict(id="orm", day=dt.date(2027, 3, 4), at=at, doc=doc))
        inserts = Inserts((await s.connection()).dialect)
        sql, params = inserts(things, [dict(id="hop", day=dt.date(2027, 3, 4), at=at, doc=doc)])

        def write(conn: sqlite3.Connection) -> int:
            return conn.executemany(sql, params).rowcount

        assert await on_thread(await s.connection(), write) == 1
    async with db.transaction(readonly=True) as s:
        raw = {r[0]: r[1:] for r in (await s.execute(text("SELECT id, day, at, doc, n FROM things"))).all()}
        typed = {r.id: r[1:] for r in (await s.execute(select(things))).all()}
    assert raw["hop"] == raw["orm"]  # the same stored text, the default (n = 7) included
    assert typed["hop"] == typed["orm"] == (dt.date(2027, 3, 4), at.astimezone(dt.UTC), doc, 7)


async def test_an_error_on_the_thread_undoes_the_whole_transaction(db: Database) -> None:
    async with db.transaction() as s:
        inserts = Inserts((await s.connection()).dialect)
    row = dict(id="d", day=dt.date(2027, 1, 1), at=dt.datetime(2027, 1, 1, tzinfo=dt.UTC), doc={})
    sql, params = inserts(things, [row])
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(insert(things), dict(row, id="before"))
            await on_thread(await s.connection(), lambda c: c.executemany(sql, params + params))
    async with db.transaction(readonly=True) as s:
        assert (await s.execute(text("SELECT count(*) FROM things"))).scalar_one() == 0


def test_inserts_refuse_a_key_that_is_no_column() -> None:
    from shared.sqlite_driver import SQLiteDialect_pitcrew

    with pytest.raises(ValueError, match="no column"):
        Inserts(SQLiteDialect_pitcrew())(things, [{"id": "a", "colour": "red"}])


def _row(name: str) -> Any:
    return text(f"INSERT INTO things (id, day, at, doc, n) VALUES ('{name}', '2027-01-01', '2027-01-01', '{{}}', 1)")


def _begins(db: Database) -> list[str]:
    """Every BEGIN sent to SQLite from now on, as the driver's own trace sees it."""
    sent: list[str] = []

    def trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(lambda sql: sent.append(sql) if sql.startswith("BEGIN") else None)

    from sqlalchemy import event

    event.listen(db.engine.sync_engine, "connect", lambda dbapi, _rec: trace(dbapi._connection._conn))
    return sent


async def test_begin_goes_with_the_first_statement_and_a_transaction_that_runs_nothing_sends_none(tmp_path) -> None:
    database = Database(f"sqlite:///{tmp_path}/b.db", pool_size=2)
    sent = _begins(database)
    try:
        async with database.engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        sent.clear()
        async with database.transaction() as s:
            await s.connection()  # begun for SQLAlchemy, nothing sent yet
            assert sent == [] and database.writer is not None and not database.writer.locked()
            await s.execute(text("SELECT 1"))
            assert sent == ["BEGIN IMMEDIATE"] and database.writer.locked()  # its turn to write: taken
        assert not database.writer.locked()
        async with database.transaction(readonly=True) as s:
            await s.execute(text("SELECT 1"))
            assert not database.writer.locked()  # a reader never queues
        assert sent == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]
        async with database.transaction() as s:
            await s.connection()
        assert sent == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"] and not database.writer.locked()
    finally:
        await database.dispose()


async def test_the_write_queue_turn_is_given_back_on_commit_error_and_rollback(db: Database) -> None:
    assert db.writer is not None
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(_row("x"))
            await s.execute(_row("x"))
    assert not db.writer.locked()
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await on_thread(await s.connection(), lambda c: c.execute("SELECT 1").fetchall())
            assert db.writer.locked()
            raise RuntimeError("the use case gave up")
    assert not db.writer.locked()
    async with db.transaction() as s:  # and the next writer gets its turn at once
        await s.execute(_row("y"))
    async with db.transaction(readonly=True) as s:
        assert (await s.execute(text("SELECT count(*) FROM things"))).scalar() == 1


async def test_writers_take_turns_first_come_first_served_from_their_first_statement(db: Database) -> None:
    import asyncio

    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def writer(name: str, hold: bool = False) -> None:
        async with db.transaction() as s:
            await s.execute(_row(name))
            order.append(name)
            if hold:
                first_in.set()
                await release.wait()

    a = asyncio.create_task(writer("a", hold=True))
    await first_in.wait()
    others = []
    for name in "bcd":
        others.append(asyncio.create_task(writer(name)))
        await asyncio.sleep(0.01)  # b queues before c, c before d
    assert order == ["a"]  # the others wait their turn (not SQLite's busy handler: no error, no sleep)
    release.set()
    await asyncio.gather(a, *others)
    assert order == ["a", "b", "c", "d"]


async def test_a_reader_is_served_while_writers_queue_for_their_turn(db: Database) -> None:
    """Writers hold a connection while they wait in the write queue: the pool leaves room for readers."""
    import asyncio

    release = asyncio.Event()
    holding = asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as s:
            await s.execute(_row("h"))
            holding.set()
            await release.wait()

    async def writer(i: int) -> None:
        async with db.transaction() as s:
            await s.execute(_row(f"w{i}"))

    first = asyncio.create_task(holder())
    await holding.wait()
    queued = [asyncio.create_task(writer(i)) for i in range(8)]  # pool_size 2: well past the pool itself
    await asyncio.sleep(0.05)
    async with db.transaction(readonly=True) as s:
        seen = (await s.execute(text("SELECT count(*) FROM things"))).scalar()
    assert seen == 0 and not first.done()  # read while every writer still waited
    release.set()
    await asyncio.gather(first, *queued)
    async with db.transaction(readonly=True) as s:
        assert (await s.execute(text("SELECT count(*) FROM things"))).scalar() == 9


async def test_a_connection_terminated_without_rollback_gives_back_its_turn(db: Database) -> None:
    """The pool terminates an invalidated connection, or one the garbage collector finds checked out
    (a request cancelled at the wrong moment): the write queue must not stay taken by it."""
    assert db.writer is not None
    conn = await db.engine.connect()
    await conn.begin()
    await conn.execute(_row("t"))
    assert db.writer.locked()
    await conn.invalidate()  # the pool terminates the connection, without any rollback first
    assert not db.writer.locked()
    await conn.close()
    async with db.transaction() as s:  # the next writer is not stuck behind it
        await s.execute(_row("u"))
