"""SQLite for asyncio with one hop to the database thread per statement (`sqlite+pitcrew://`).

aiosqlite runs every call on its own thread; SQLAlchemy's adapter makes four of them per statement
(open a cursor, execute, fetch the rows, close the cursor), each a queue put, a thread wake-up and
a wake-up of the event loop. On a loaded machine each hop waits for a time slice: a budget posting
of seven statements took 25 hops, and its write lock was held for all of them. This dialect is
SQLAlchemy's aiosqlite dialect with two changes: a statement (cursor, execute, fetch, close) runs as
one function on aiosqlite's thread, through the same queue SQLAlchemy's own adapter uses to set the
isolation level; and a transaction's BEGIN (`defer_begin`) runs in the hop of its first statement
rather than in a hop of its own. Results, errors and transactions are exactly the driver's.

A write transaction (BEGIN IMMEDIATE) of a connection given the process's `write_lock` (shared.db's
fair write queue) takes the lock just before that first hop and gives it back when it commits, rolls
back or closes: the lock covers exactly SQLite's own write lock, and the Python a request runs before
its first statement runs beside the writer ahead of it instead of behind it.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util.concurrency import await_

T = TypeVar("T")

NAME = "pitcrew"  # the URL scheme is sqlite+pitcrew://


class _Outcome:
    """What one statement left on the driver's cursor, read back on the event loop."""

    __slots__ = ("description", "rowcount", "lastrowid", "arraysize")

    def __init__(self) -> None:
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1

    def close(self) -> None:
        """Nothing to release: the driver's cursor was closed on its thread."""


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ()
    _awaitable_cursor_close = False  # closed on the database thread, inside the statement's hop

    def _make_new_cursor(self, connection: Any) -> Any:
        return _Outcome()

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    async def _hop(self, many: bool, operation: Any, parameters: Any) -> None:
        conn = self._connection  # aiosqlite.Connection
        outcome: _Outcome = self._cursor  # type: ignore[assignment]
        adapted: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        begin = await adapted.open_transaction()

        def run() -> list[Any] | None:
            if begin is not None:
                conn._conn.execute(begin)
            cur = conn._conn.cursor()
            try:
                if many:
                    cur.executemany(operation, parameters)
                elif parameters is None:
                    cur.execute(operation)
                else:
                    cur.execute(operation, parameters)
                rows = cur.fetchall() if cur.description else None
                outcome.description, outcome.rowcount, outcome.lastrowid = (
                    cur.description,
                    cur.rowcount,
                    cur.lastrowid,
                )
                return rows
            finally:
                cur.close()

        async with self._adapt_connection._execute_mutex:
            rows = await conn._execute(run)
        if rows is not None:
            self._rows = collections.deque(rows)

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._hop(False, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._hop(True, operation, seq_of_parameters)

    def nextset(self) -> None:
        """SQLite has one result set per statement."""


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_begin", "write_lock", "_holds")
    _cursor_cls = OneHopCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None
        self.write_lock: asyncio.Lock | None = None  # the process's write queue, if it has one
        self._holds = False

    def defer_begin(self, mode: str) -> None:
        """Open the transaction (`BEGIN <mode>`) in the hop of its first statement: a write
        transaction holds the write lock one hop less, and one that runs nothing costs nothing."""
        self._begin = f"BEGIN {mode}"

    @property
    def owes_begin(self) -> bool:
        return self._begin is not None

    def take_begin(self) -> str | None:
        """The BEGIN still owed, for the statement about to run (dropped once taken)."""
        begin, self._begin = self._begin, None
        return begin

    async def open_transaction(self) -> str | None:
        """The BEGIN to send with the statement about to run, once this connection's turn to write
        has come (a write transaction waits in the write queue first, first come first served)."""
        begin = self.take_begin()
        if begin is not None and begin != "BEGIN DEFERRED" and self.write_lock is not None and not self._holds:
            await self.write_lock.acquire()
            self._holds = True
        return begin

    def _leave_queue(self) -> None:
        if self._holds:
            self._holds = False
            assert self.write_lock is not None
            self.write_lock.release()

    def _idle(self) -> bool:
        """No transaction open: nothing for COMMIT or ROLLBACK to do. The pool rolls back every
        connection it takes back; this spares that hop after a commit. (Read while no statement of
        this connection runs: its session is done with it.)"""
        conn = self._connection._connection  # the sqlite3 connection, None once closed
        return conn is not None and not conn.in_transaction

    def commit(self) -> None:
        if self.take_begin() is None and not self._idle():
            super().commit()  # a failed COMMIT keeps the transaction and the turn: the rollback ends both
        self._leave_queue()

    def rollback(self) -> None:
        try:
            if self.take_begin() is None and not self._idle():
                super().rollback()
        finally:
            self._leave_queue()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._leave_queue()

    def terminate(self) -> None:
        """Closed by the pool without a rollback (an invalidated connection, or one the garbage
        collector found checked out, as after a cancelled request): its turn ends with it."""
        try:
            super().terminate()
        finally:
            self._leave_queue()


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator_fn = kw.pop("async_creator_fn", None)
        connection = creator_fn(*arg, **kw) if creator_fn else self.aiosqlite.connect(*arg, **kw)
        thread = getattr(connection, "_thread", connection)  # aiosqlite 0.22+ holds its thread
        thread.daemon = True  # as SQLAlchemy's dialect does: a forgotten connection never blocks exit
        return OneHopConnection(self, await_(connection))


class SQLiteDialect_pitcrew(SQLiteDialect_aiosqlite):
    driver = NAME
    supports_statement_cache = True  # the statements are the aiosqlite dialect's own

    @classmethod
    def import_dbapi(cls) -> Any:
        import sqlite3

        import aiosqlite

        return OneHopDBAPI(aiosqlite, sqlite3)

    def get_driver_connection(self, connection: Any) -> Any:
        """Refused while a BEGIN is owed: the caller would run statements outside its transaction
        (`driver_of` begins it first)."""
        if isinstance(connection, OneHopConnection) and connection.owes_begin:
            raise RuntimeError("this connection's transaction has not begun yet: use shared.sqlite_driver.driver_of")
        return super().get_driver_connection(connection)


dialect = SQLiteDialect_pitcrew


async def on_thread(conn: AsyncConnection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn` with the driver's connection on the database thread, in `conn`'s open transaction:
    several statements for the price of one hop (a hot path that writes a handful of rows). Errors
    come back as SQLAlchemy's (IntegrityError and so on), as from any statement."""
    raw = await conn.get_raw_connection()
    adapted = raw.dbapi_connection
    if not isinstance(adapted, OneHopConnection):
        raise TypeError(f"on_thread needs a sqlite+{NAME} connection, not {type(adapted).__name__}")
    driver = adapted._connection
    begin = await adapted.open_transaction()
    async with adapted._execute_mutex:

        def run(db: sqlite3.Connection) -> T:
            if begin is not None:
                db.execute(begin)
            return fn(db)

        try:
            return await driver._execute(run, driver._conn)
        except sqlite3.Error as err:
            raise DBAPIError.instance(None, None, err, sqlite3.Error) from err


async def driver_of(conn: AsyncConnection) -> Any:
    """The aiosqlite connection under `conn`, for code that drives aiosqlite itself, with `conn`'s
    transaction begun first (the BEGIN still owed sent, the write queue's turn taken): statements
    sent straight to the driver would otherwise run outside any transaction, each committing alone."""
    raw = await conn.get_raw_connection()
    adapted = raw.dbapi_connection
    if not isinstance(adapted, OneHopConnection):
        raise TypeError(f"driver_of needs a sqlite+{NAME} connection, not {type(adapted).__name__}")
    if adapted.owes_begin:
        await on_thread(conn, lambda _db: None)
    return adapted._connection


class Inserts:
    """INSERTs of rows given as dicts, for `on_thread`: the SQL and the parameters as the column
    types bind them (dates, UTC datetimes, JSON), the same values SQLAlchemy's insert() would send."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._made: dict[tuple[str, tuple[str, ...]], tuple[str, list[Any]]] = {}

    def __call__(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> tuple[str, list[tuple[Any, ...]]]:
        first = rows[0]
        key = (table.name, tuple(first))
        made = self._made.get(key)
        if made is None:
            made = self._make(table, first)
            self._made[key] = made
        sql, cols = made
        return sql, [tuple(p(r.get(n, d)) if p else r.get(n, d) for n, d, p in cols) for r in rows]

    def _make(self, table: Table, first: Mapping[str, Any]) -> tuple[str, list[Any]]:
        unknown = set(first) - set(table.c.keys())
        if unknown:
            raise ValueError(f"{table.name} has no column {sorted(unknown)}")
        cols = []
        for c in table.c:
            default = c.default
            if c.name in first:
                value = None
            elif default is not None and getattr(default, "is_scalar", False):
                value = default.arg  # type: ignore[attr-defined]
            elif default is not None:
                raise ValueError(f"{table.name}.{c.name}: give it; its default is computed")
            else:
                continue
            cols.append((c.name, value, c.type.dialect_impl(self.dialect).bind_processor(self.dialect)))
        names = ", ".join(n for n, _, _ in cols)
        return f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(cols))})", cols


registry.register(f"sqlite.{NAME}", __name__, "dialect")
