"""The rollup store: (count, sum, min, max) per measurement type, UTC day or month and dimension set.

Ingest adds each batch's deltas in the batch's own transaction, so the rollups always equal the
aggregation of the raw rows; `rebuild_rollups` recomputes them from the raw rows to prove (or
restore) it. A rollup's sum stays within +-MAX_ROLLUP_SUM (models): a batch that would take one
past it is a Conflict and writes nothing. Reads that add many rollups up stay exact: see
`sum_parts`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, delete, func, insert, literal_column, select

from services.kpi.models import MAX_ROLLUP_SUM, ROLLUP_SUM_RULE, measurements, rollups_daily, rollups_monthly
from services.kpi.raw import Row
from services.kpi.values import date_of, day_of, month_of
from shared.db import driver_sql, violated_check
from shared.errors import Conflict
from shared.sqlite_driver import driver_of
from shared.uow import UnitOfWork

Delta = tuple[str, int, int, int, int, int, int]  # (type, day or month, dimset_id, count, sum, min, max)
# (type, dimension set hash) -> (source, dimension pairs) of its first row in the batch
Combos = dict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...]]]

# One batch's delta to a rollup must itself lie within the bound: the upsert's proposed row is the delta,
# and both databases check it before turning the insert into an update. A delta out of range is refused
# here, before it could overflow a 64-bit parameter; a delta in range added to a stored sum in range
# stays within +-2 * 10**18, inside 64 bits, and the CHECK constraint decides.
_DELTA_LIMIT = MAX_ROLLUP_SUM
_ROLLUP_CHECKS = frozenset({"ck_rollups_daily_sum_in_range", "ck_rollups_monthly_sum_in_range"})
_sum_of = itemgetter(4)
_LOW_BITS = literal_column("4294967295", Integer)  # 2**32 - 1
_HIGH_SHIFT = literal_column("32", Integer)


def aggregate(rows: list[Row], ids: dict[str, int]) -> tuple[list[Delta], list[Delta], Combos]:
    """The rollup deltas of `rows`: daily and monthly (count, sum, min, max) per key, in key order.

    Also the (type, dimension set) combinations in order of first appearance, each with
    the source and dimension pairs of its first row (for the first sightings). One pass
    over the rows collects each daily key's values (a batch has few keys: 10,000
    measurements over 4 days and 320 dimension sets make ~2,500); count, sum, min and
    max are then taken per key by C loops, and the months from the days.
    """
    groups: dict[tuple[str, int, str], list[int]] = {}
    month_at: dict[int, int] = {}
    combos: Combos = {}
    for _, mtype, value, _, pairs, h, src, _, day, month, _ in rows:
        key = (mtype, day, h)
        values = groups.get(key)
        if values is None:
            groups[key] = [value]
            month_at[day] = month
            if (mtype, h) not in combos:
                combos[(mtype, h)] = (src, pairs)
        else:
            values.append(value)
    daily = sorted([(mtype, day, ids[h], len(v), sum(v), min(v), max(v)) for (mtype, day, h), v in groups.items()])
    months: dict[tuple[str, int, int], list[int]] = {}
    for mtype, day, dimset, count, total, low, high in daily:
        mkey = (mtype, month_at[day], dimset)
        acc = months.get(mkey)
        if acc is None:
            months[mkey] = [count, total, low, high]
        else:
            acc[0] += count
            acc[1] += total
            if low < acc[2]:
                acc[2] = low
            if high > acc[3]:
                acc[3] = high
    monthly = sorted(
        [(mtype, month, dimset, c, s, lo, hi) for (mtype, month, dimset), (c, s, lo, hi) in months.items()]
    )
    return daily, monthly, combos


def _upsert_sql(table: str, period: str, source: str) -> str:
    """Add rollup deltas (type, period, dimset_id, count, sum, min, max) to `table`, per key."""
    return (
        f"INSERT INTO {table} (type, {period}, dimset_id, count, sum, min, max) {source} "
        f"ON CONFLICT (type, {period}, dimset_id) DO UPDATE SET "
        f"count = {table}.count + excluded.count, sum = {table}.sum + excluded.sum, "
        f"min = CASE WHEN excluded.min < {table}.min THEN excluded.min ELSE {table}.min END, "
        f"max = CASE WHEN excluded.max > {table}.max THEN excluded.max ELSE {table}.max END"
    )


_UPSERT_SQL = {
    (dialect, period): _upsert_sql(table, period, source)
    for dialect, source in (
        ("sqlite", "VALUES (?, ?, ?, ?, ?, ?, ?)"),
        (
            "postgresql",
            "SELECT * FROM unnest(?::varchar[], ?::int[], ?::bigint[], ?::bigint[], ?::bigint[], "
            "?::bigint[], ?::bigint[])",
        ),
    )
    for table, period in (("rollups_daily", "day"), ("rollups_monthly", "month"))
}


async def add_deltas(uow: UnitOfWork, daily: list[Delta], monthly: list[Delta]) -> None:
    """Upsert the batch's rollup deltas (`aggregate`), in key order.

    Key order makes concurrent batches lock rollup rows in the same order on PostgreSQL.
    SQLite: one prepared statement run per key on the driver connection (executemany);
    PostgreSQL: one INSERT ... SELECT FROM unnest() per table. A delta or a new sum outside
    +-MAX_ROLLUP_SUM is a Conflict (409), and the caller's transaction (raw rows and all)
    rolls back: a delta is judged here, a new sum by the database's CHECK constraint.
    """
    for deltas in (daily, monthly):
        if deltas:
            sums = list(map(_sum_of, deltas))
            if min(sums) <= -_DELTA_LIMIT or max(sums) >= _DELTA_LIMIT:
                raise Conflict(ROLLUP_SUM_RULE)
    conn = await uow.connection()
    dialect = conn.dialect.name
    driver = None if dialect == "postgresql" else await driver_of(conn)
    try:
        for period, deltas in (("day", daily), ("month", monthly)):
            if not deltas:
                continue
            sql = _UPSERT_SQL[(dialect, period)]
            if driver is not None:
                await driver.executemany(sql, deltas)
            else:
                await conn.exec_driver_sql(driver_sql(conn.dialect.paramstyle, sql), tuple(zip(*deltas, strict=True)))
    except Exception as exc:
        if violated_check(exc) in _ROLLUP_CHECKS:
            raise Conflict(ROLLUP_SUM_RULE) from exc
        raise


def sum_parts(dialect: str, col: Any) -> list[Any]:
    """SUM(`col`) as aggregates that never overflow: `[sum]` on PostgreSQL (sum(bigint) is numeric), and on
    SQLite, whose sum() of integers fails with "integer overflow" past 64 bits, `[sum of the high 32 bits,
    sum of the low 32 bits]` (each term below 2**32, so exact for up to 2**31 rows), which `join_sum`
    adds up in Python: hi * 2**32 + lo."""
    if dialect == "postgresql":
        return [func.sum(col)]
    return [func.sum(col.op(">>")(_HIGH_SHIFT)), func.sum(col.op("&")(_LOW_BITS))]


def join_sum(hi: Any, lo: Any) -> int | None:
    """The exact SUM of SQLite's two `sum_parts` (None over no rows)."""
    return None if hi is None else (int(hi) << 32) + int(lo)


def whole_months(from_day: int | None, to_day: int | None) -> tuple[int | None, int | None]:
    """A UTC day range widened to whole UTC months (either end may be open)."""
    if from_day is not None:
        from_day = day_of(date_of(from_day).replace(day=1))
    if to_day is not None:
        last = date_of(to_day)
        to_day = day_of(dt.date(last.year + last.month // 12, last.month % 12 + 1, 1)) - 1
    return from_day, to_day


async def rebuild_rollups(
    uow: UnitOfWork,
    *,
    types: Sequence[str] | None = None,
    from_day: int | None = None,
    to_day: int | None = None,
) -> int:
    """Recompute the rollups from raw rows (all, or some types / a day range); returns daily rows written.

    A day range is widened to whole UTC months so the monthly rollups stay complete.
    """
    m = measurements.c
    from_day, to_day = whole_months(from_day, to_day)
    written = 0
    for table, period in ((rollups_daily, "day"), (rollups_monthly, "month")):
        r = table.c
        cond_r: list[ColumnElement[bool]] = []
        cond_m: list[ColumnElement[bool]] = []
        if types:
            cond_r.append(r.type.in_(types))
            cond_m.append(m.type.in_(types))
        if from_day is not None:
            cond_m.append(m.day >= from_day)
            cond_r.append(r[period] >= (from_day if period == "day" else month_of(date_of(from_day))))
        if to_day is not None:
            cond_m.append(m.day <= to_day)
            cond_r.append(r[period] <= (to_day if period == "day" else month_of(date_of(to_day))))
        await uow.execute(delete(table).where(and_(True, *cond_r)))
        total: Any = func.sum(m.value)
        if uow.dialect != "postgresql":
            # SQLite: a group's sum fits (it is a rollup's), but a running sum inside sum() could pass 64 bits
            # on the way; the parts cannot, and hi * 2**32 + lo past 64 bits is a float the CHECK refuses.
            hi, lo = sum_parts("sqlite", m.value)
            total = hi * literal_column("4294967296", Integer) + lo
        agg = (
            select(m.type, m[period], m.dimset_id, func.count(), total, func.min(m.value), func.max(m.value))
            .where(and_(True, *cond_m))
            .group_by(m.type, m[period], m.dimset_id)
        )
        await uow.execute(insert(table).from_select(["type", period, "dimset_id", "count", "sum", "min", "max"], agg))
        if period == "day":
            written = int(await uow.scalar(select(func.count()).select_from(table).where(and_(True, *cond_r))) or 0)
    return written
