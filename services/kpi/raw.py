"""The raw measurement store: one row per accepted measurement, unique by (source, external_id).

A validated measurement is a plain tuple (`Row`), not an object: a batch holds 10,000 of them,
and nothing in one is a mutable container, so the garbage collector stops tracking them at its
first look and a batch's rows do not make every later collection slower. The unique index that
makes a stored (source, external_id) a duplicate is also what finds it, in the same statement as
the insert: SQLite by multi-row VALUES on the driver connection, PostgreSQL by one INSERT ...
SELECT FROM unnest() of column arrays.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any, Final

from sqlalchemy import event

from services.kpi.values import time_text
from shared.db import Database, driver_sql
from shared.sqlite_driver import driver_of
from shared.uow import UnitOfWork

# (index, type, value, time, dims, hash, source, external_id, day, month, time_text): dims are the
# sorted (name, value) pairs, time_text the time as SQLite stores it (`values.time_text`).
Row = tuple[int, str, int, dt.datetime, tuple[tuple[str, str], ...], str, str, "str | None", int, int, str]
INDEX: Final = 0
TYPE: Final = 1
VALUE: Final = 2
TIME: Final = 3
DIMS: Final = 4
HASH: Final = 5
SOURCE: Final = 6
EXTERNAL_ID: Final = 7
DAY: Final = 8
MONTH: Final = 9
TIME_TEXT: Final = 10
index_of = itemgetter(INDEX)
_source_of = itemgetter(SOURCE)
_external_id_of = itemgetter(EXTERNAL_ID)

RAW_COLUMNS = "type, value, time, day, month, dimset_id, source, external_id, received_at"
# One raw row per statement: the benchmark's bulk fill (the ingest path uses multi-row VALUES).
INSERT_RAW = f"INSERT INTO measurements ({RAW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SKIP_STORED = " ON CONFLICT (source, external_id) DO NOTHING"
_VALUES_SQL: dict[int, str] = {}
VALUES_ROWS = 1_000  # rows per multi-row INSERT on SQLite (9,000 parameters; the limit is 32,766)
_UNNEST_INSERT = (
    f"INSERT INTO measurements ({RAW_COLUMNS}) "
    "SELECT t.*, ?::timestamptz FROM unnest(?::varchar[], ?::bigint[], ?::timestamptz[], ?::int[], ?::int[], "
    "?::bigint[], ?::varchar[], ?::varchar[]) AS t" + _SKIP_STORED + " RETURNING source, external_id"
)

# Per-connection settings of the KPI database on SQLite. A batch of 10,000 measurements
# dirties ~450 pages, so the default automatic checkpoint (at 1,000 WAL pages) ran on
# every second commit, copying and syncing the same index and rollup pages again and
# again; at 10,000 pages (a WAL of up to ~40 MB) it runs every ~20 batches.
SQLITE_PRAGMAS = ("PRAGMA wal_autocheckpoint=10000",)


def tune_sqlite(db: Database) -> None:
    """Apply SQLITE_PRAGMAS to every new connection of `db` (nothing on PostgreSQL); before first use."""
    if not db.is_sqlite:
        return

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
        cursor.close()

    event.listen(db.engine.sync_engine, "connect", pragmas)


def chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def first_occurrences(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """The rows whose (source, external_id) is the first of its kind in the batch, and the repeats.

    Both in item order. Rows without external_id are never repeats. When no id repeats
    (the usual batch), that is known from one set and every row is kept without a loop.
    """
    sources = set(map(_source_of, rows))
    if len(sources) <= 1:
        exts = list(filter(None, map(_external_id_of, rows)))  # ids are never ""
        if len(set(exts)) == len(exts):
            return rows, []
    first: list[Row] = []
    repeats: list[Row] = []
    taken: set[tuple[str, str]] = set()
    for r in rows:
        ext = r[EXTERNAL_ID]
        if ext is not None:
            key = (r[SOURCE], ext)
            if key in taken:
                repeats.append(r)
                continue
            taken.add(key)
        first.append(r)
    return first, repeats


def split_inserted(rows: list[Row], inserted: set[tuple[str, str]]) -> tuple[list[Row], list[Row]]:
    """(rows that were inserted, rows skipped as duplicates), given the keys the INSERT stored.

    Rows without external_id are always new. A key belongs to the first row that has it
    (rows are in item order, and the INSERT kept the first occurrence), so a repeat of
    it later in `rows` is a duplicate. `inserted` is consumed.
    """
    fresh: list[Row] = []
    stored: list[Row] = []
    for r in rows:
        ext = r[EXTERNAL_ID]
        if ext is None:
            fresh.append(r)
            continue
        key = (r[SOURCE], ext)
        if key in inserted:
            inserted.discard(key)
            fresh.append(r)
        else:
            stored.append(r)
    return fresh, stored


def values_sql(n: int) -> str:
    """The SQLite multi-row INSERT of `n` raw rows that skips stored (source, external_id) keys."""
    sql = _VALUES_SQL.get(n)
    if sql is None:
        sql = _VALUES_SQL[n] = (
            f"INSERT INTO measurements ({RAW_COLUMNS}) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * n)
            + _SKIP_STORED
        )
    return sql


def raw_params(rows: Sequence[Row], ids: dict[str, int], received: str) -> list[Any]:
    """The parameters of `values_sql(len(rows))`: the raw columns of each row, one flat list."""
    params: list[Any] = []
    extend = params.extend
    for _, mtype, value, _, _, h, src, ext, day, month, text in rows:
        extend((mtype, value, text, day, month, ids[h], src, ext, received))
    return params


async def insert_raw(
    uow: UnitOfWork, rows: list[Row], ids: dict[str, int], now: dt.datetime
) -> tuple[list[Row], list[Row]]:
    """Insert the rows unless their (source, external_id) is stored: (inserted rows, duplicates).

    `rows` hold no repeated external id. SQLite: multi-row VALUES of 1,000 rows, run on the
    driver connection (one trip to its thread per statement); `SqliteInserts` tells the
    inserted rows from the skipped ones. PostgreSQL: one INSERT ... SELECT FROM unnest(),
    RETURNING the keys of the new rows when some were skipped.
    """
    conn = await uow.connection()
    if conn.dialect.name == "postgresql":
        cols = list(
            zip(
                *[
                    (mtype, value, t, day, month, ids[h], src, ext)
                    for _, mtype, value, t, _, h, src, ext, day, month, _ in rows
                ],
                strict=True,
            )
        )
        sql = driver_sql(conn.dialect.paramstyle, _UNNEST_INSERT)
        returned: list[Any] = list((await conn.exec_driver_sql(sql, (now, *cols))).all())
        if len(returned) == len(rows):
            return rows, []
        return split_inserted(rows, {(r[0], r[1]) for r in returned})
    driver = await driver_of(conn)
    received = time_text(now)
    inserts = SqliteInserts(driver)
    fresh: list[Row] = []
    stored: list[Row] = []
    for chunk in chunks(rows, VALUES_ROWS):
        done = await driver.execute(values_sql(len(chunk)), raw_params(chunk, ids, received))
        new, old = await inserts.settle(done, list(chunk))
        fresh.extend(new)
        stored.extend(old)
    inserts.check()
    return fresh, stored


class SqliteInserts:
    """What the multi-row INSERTs of one SQLite transaction stored.

    The transaction is the database's only writer, and a new row's id is one more than
    the largest, so the rows it inserts have consecutive ids; a statement's row count
    says whether any row was skipped as stored, and only then are the inserted keys
    read back, by that statement's id range.
    """

    def __init__(self, driver: Any):
        self.driver = driver
        self.first: int | None = None
        self.last = 0
        self.inserted = 0

    async def settle(self, done: Any, rows: list[Row]) -> tuple[list[Row], list[Row]]:
        """(rows inserted, rows skipped as duplicates) of one finished statement over `rows`."""
        n = done.rowcount
        if n > 0:
            self.last = done.lastrowid
            if self.first is None:
                self.first = self.last - n + 1
            self.inserted += n
        if n == len(rows):
            return rows, []
        keys: set[tuple[str, str]] = set()
        if n > 0:
            got = await self.driver.execute_fetchall(
                "SELECT source, external_id FROM measurements WHERE id BETWEEN ? AND ?", (self.last - n + 1, self.last)
            )
            keys = {(a, b) for a, b in got}
        return split_inserted(rows, keys)

    def check(self) -> None:
        if self.first is not None and self.last - self.first + 1 != self.inserted:
            # only if the largest id were 2^63 - 1 (SQLite then picks at random)
            raise RuntimeError("measurement ids are not consecutive")
