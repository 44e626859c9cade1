"""Measurement ingest: validation, idempotency, raw rows, incremental rollups, data quality.

One batch is one transaction: the raw rows, their daily rollups, the new
dimension sets, first sightings and quality records commit together, so the
rollups always equal the aggregation of the raw rows (`rebuild_rollups` proves
it by recomputing them). Items are judged one by one: a bad item is reported
in `rejected` with its index and reason, the others are accepted.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, and_, delete, event, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.kpi.formula import KEY_RE
from services.kpi.models import (
    dimension_sets,
    measurements,
    quality_issues,
    rollups_daily,
    rollups_monthly,
    seen_values,
)
from shared.db import Database, utcnow
from shared.errors import Invalid
from shared.identity import Principal

MAX_BATCH = 10_000
MICRO = 1_000_000
MAX_ABS_VALUE = Decimal(10) ** 10  # keeps rollup sums well inside 64-bit integers
MAX_DIMENSIONS = 20
EPOCH = dt.date(1970, 1, 1)
SAMPLE = 20
EPOCH_ORDINAL = EPOCH.toordinal()
ITEM_FIELDS = frozenset({"type", "value", "time", "dimensions", "source", "external_id"})
_MICRO_EXP = Decimal("0.000001")
_UTC = dt.UTC
_fromisoformat = dt.datetime.fromisoformat


# ---------------------------------------------------------------- values


def to_micro(value: Any) -> int:
    """A decimal string (or int) to exact micro-units; ValueError says why not."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("value must be a decimal string such as \"12.50\", not a floating-point number")
    if isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"value {value!r} is not a decimal number") from None
    elif isinstance(value, Decimal):
        d = value
    else:
        raise ValueError("value must be a decimal string")
    if not d.is_finite():
        raise ValueError(f"value {value!r} is not a finite number")
    if abs(d) >= MAX_ABS_VALUE:
        raise ValueError(f"value {value!r} is too large (limit {MAX_ABS_VALUE:,})")
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp >= -6:
        return int(d.scaleb(6))
    scaled = d.scaleb(6)  # e.g. "1.50000000" has a small exponent but is still exact
    if scaled != scaled.to_integral_value():
        raise ValueError(f"value {value!r} has more than 6 decimal places")
    return int(scaled)


def fast_micro(value: Any) -> int | None:
    """`to_micro` for the common shapes ("12.50", "-3", 7) without Decimal; None: use `to_micro`.

    Only plain ASCII digits, an optional leading "-" and 1 to 6 decimals after a
    point are taken here, so every value it accepts `to_micro` accepts with the same
    result; anything else (spaces, exponents, "1.", too many digits) goes the exact
    way and gets its reason there.
    """
    if type(value) is str:
        if not value.isascii():
            return None
        whole, dot, frac = value.partition(".")
        neg = whole[:1] == "-"
        if neg:
            whole = whole[1:]
        if not (0 < len(whole) <= 10 and whole.isdigit()):  # < 10^10, the MAX_ABS_VALUE limit
            return None
        if dot:
            if not (0 < len(frac) <= 6 and frac.isdigit()):
                return None
            micro = int(whole) * MICRO + int(frac) * _FRAC_SCALE[len(frac)]
        else:
            micro = int(whole) * MICRO
        return -micro if neg else micro
    if type(value) is int and -MAX_ABS_INT < value < MAX_ABS_INT:
        return value * MICRO
    return None


MAX_ABS_INT = 10**10
_FRAC_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)


def from_micro(micro: int) -> Decimal:
    return Decimal(micro).scaleb(-6)


def day_number(t: dt.datetime) -> int:
    return (t.astimezone(dt.UTC).date() - EPOCH).days


def month_number(t: dt.datetime) -> int:
    t = t.astimezone(dt.UTC)
    return t.year * 12 + t.month - 1


def parse_time(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"time {value!r} is not an ISO 8601 date-time") from None
    else:
        raise ValueError("time must be an ISO 8601 date-time string")
    if t.tzinfo is None:
        raise ValueError(f"time {value!r} has no UTC offset (add Z or +hh:mm)")
    return t.astimezone(dt.UTC)


def canonical_dims(dims: Any) -> dict[str, str]:
    if dims is None:
        return {}
    if not isinstance(dims, dict):
        raise ValueError("dimensions must be an object of name -> string value")
    if len(dims) > MAX_DIMENSIONS:
        raise ValueError(f"at most {MAX_DIMENSIONS} dimensions")
    out: dict[str, str] = {}
    for k, v in dims.items():
        if not isinstance(k, str) or not KEY_RE.match(k):
            raise ValueError(f"dimension name {k!r} must be lower-case letters, digits and _")
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError(f"dimension {k!r} must be a string")
        s = str(v).strip()
        if not s or len(s) > 200:
            raise ValueError(f"dimension {k!r} must be 1 to 200 characters")
        out[k] = s
    return dict(sorted(out.items()))


def dims_hash(dims: dict[str, str]) -> str:
    raw = json.dumps(dims, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------- portable upsert


def dialect_insert(session: AsyncSession, table: Table) -> Any:
    """INSERT with ON CONFLICT support for the session's backend (SQLite or PostgreSQL)."""
    name = session.bind.dialect.name
    return (postgresql.insert if name == "postgresql" else sqlite.insert)(table)


def insert_ignore(session: AsyncSession, table: Table, keys: Sequence[str]) -> Any:
    return dialect_insert(session, table).on_conflict_do_nothing(index_elements=list(keys))


async def executemany(session: AsyncSession, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Run `sql` (written with ? placeholders) once per row through the DBAPI driver.

    The one place that bypasses SQLAlchemy's per-row parameter processing, which
    dominates the cost of a 10,000-row batch; callers pass values already in the
    driver's form (see `time_param`).
    """
    if not rows:
        return
    conn = await session.connection()
    await conn.exec_driver_sql(_dollar(conn.dialect.paramstyle, sql), rows)


def _dollar(paramstyle: str, sql: str) -> str:
    """`?` placeholders in the driver's style (asyncpg numbers them: $1, $2, ...)."""
    if paramstyle != "numeric_dollar":
        return sql
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


def time_param(session: AsyncSession) -> Any:
    """How a UTC datetime goes to the driver: SQLAlchemy's SQLite text format, or as is.

    The SQLite text is "YYYY-MM-DD HH:MM:SS.ffffff" (what SQLAlchemy's DateTime
    stores); `isoformat` writes it twice as fast as `strftime`, and the slice drops
    the "+00:00" of the (UTC) datetime.
    """
    if session.bind.dialect.name == "sqlite":
        return lambda t: t.isoformat(" ", "microseconds")[:26]
    return lambda t: t


def _stored_ids_query(dialect: str, external_ids: Sequence[str]) -> tuple[str, Any]:
    """SQL (? placeholders: source, ids) for the stored external ids among `external_ids`.

    One parameter holds them all: a JSON array read by json_each on SQLite, an
    array on PostgreSQL; both use the (source, external_id) unique index.
    """
    head = "SELECT external_id FROM measurements WHERE source = ? AND external_id "
    if dialect == "postgresql":
        return head + "= ANY(?)", list(external_ids)
    return head + "IN (SELECT value FROM json_each(?))", json.dumps(list(external_ids), ensure_ascii=False)


def _upsert_sql(table: str, period: str) -> str:
    return (
        f"INSERT INTO {table} (type, {period}, dimset_id, count, sum, min, max) VALUES (?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (type, {period}, dimset_id) DO UPDATE SET "
        f"count = {table}.count + excluded.count, sum = {table}.sum + excluded.sum, "
        f"min = CASE WHEN excluded.min < {table}.min THEN excluded.min ELSE {table}.min END, "
        f"max = CASE WHEN excluded.max > {table}.max THEN excluded.max ELSE {table}.max END"
    )


UPSERT_DAILY = _upsert_sql("rollups_daily", "day")
UPSERT_MONTHLY = _upsert_sql("rollups_monthly", "month")
INSERT_RAW = (
    "INSERT INTO measurements (type, value, time, day, month, dimset_id, source, external_id, received_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


# ---------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


# One validated item, as a plain tuple: (index, type, value, time, dims, hash, source,
# external_id, day, month), dims being the sorted (name, value) pairs. 10,000 of them
# per batch, so no per-item objects beyond it, and nothing in it is a mutable
# container: the garbage collector stops tracking such tuples at its first look,
# so a batch's rows do not make every later collection slower.
_Row = tuple[int, str, int, dt.datetime, tuple[tuple[str, str], ...], str, str, "str | None", int, int]
INDEX, TYPE, VALUE, TIME, DIMS, HASH, SOURCE, EXTERNAL_ID, DAY, MONTH = range(10)
_source_of = itemgetter(SOURCE)
_external_id_of = itemgetter(EXTERNAL_ID)
_Dims = tuple[dict[str, str], str, tuple[tuple[str, str], ...]]  # canonical dict, hash, pairs


class Ingestor:
    """Writes measurement batches; keeps per-database caches of committed lookups."""

    def __init__(self, *, late_after: dt.timedelta = dt.timedelta(hours=48)):
        self.late_after = late_after
        self.dimset_ids: dict[str, int] = {}
        self.seen: set[tuple[str, str]] = set()
        self._types: set[str] = set()
        self._dims_cache: dict[tuple[tuple[Any, Any], ...], _Dims] = {}
        self._no_dims: _Dims = ({}, dims_hash({}), ())
        self._value_cache: dict[str, int] = {}  # decimal string -> micro-units, for repeated values

    def _dims(self, raw: Any) -> _Dims:
        """Canonical dimensions and their hash; cached, since a batch repeats few dimension sets.

        The cache key is the raw (name, value) pairs as given, and only sets whose
        values are all strings are cached: 1, 1.0 and True compare equal in Python, so
        a cached {"x": 1} must never answer for {"x": True}, which is refused.
        """
        if raw is None:
            return self._no_dims
        key: Any = None
        if type(raw) is dict:
            key = tuple(raw.items())
            try:
                hit = self._dims_cache.get(key)
            except TypeError:  # unhashable values: validate the slow way (and say why)
                key, hit = None, None
            if hit is not None:
                return hit
        dims = canonical_dims(raw)
        result = (dims, dims_hash(dims), tuple(dims.items()))
        if (key is not None and len(self._dims_cache) < 100_000
                and all(type(v) is str for v in raw.values())):
            self._dims_cache[key] = result
        return result

    def _after_commit(self, session: AsyncSession, dimsets: dict[str, int], seen: set[tuple[str, str]]) -> None:
        # Cache only what committed: a rolled-back dimension set must not be remembered.
        def remember(_s: Any) -> None:
            self.dimset_ids.update(dimsets)
            self.seen.update(seen)

        event.listen(session.sync_session, "after_commit", remember, once=True)

    def validate(
        self, items: Sequence[Any], principal: Principal | None, default_source: str,
    ) -> tuple[list[_Row], list[dict[str, Any]]]:
        """Judge every item: the valid ones as rows, the others as {index, reason} in `rejected`.

        The loop takes the common, valid shape in plain Python (no Decimal, no
        per-item models, cached dimension sets and values). It accepts only what
        `_row` accepts, with the same result; anything unusual or wrong goes to
        `_row`, which checks in order and gives the reason. A ValueError raised in
        the loop itself (bad dimensions) is the first error `_row` would find too,
        since type, value and time have passed by then.
        """
        rows: list[_Row] = []
        rejected: list[dict[str, Any]] = []
        append = rows.append
        types = self._types
        dims_of = self._dims
        values = self._value_cache
        slow = self._row
        scoped = principal if principal is not None and principal.scopes else None
        for i, item in enumerate(items):
            try:
                if type(item) is not dict or not item.keys() <= ITEM_FIELDS:
                    append(slow(i, item, principal, default_source))
                    continue
                mtype = item.get("type")
                v = item.get("value")
                t = item.get("time")
                if type(v) is str:
                    value = values.get(v)
                    if value is None:
                        value = fast_micro(v)
                        if value is not None and len(values) < 100_000:
                            values[v] = value
                else:
                    value = fast_micro(v)
                if value is None or type(t) is not str or type(mtype) is not str or mtype not in types:
                    append(slow(i, item, principal, default_source))
                    continue
                try:
                    t = _fromisoformat(t)
                except ValueError:
                    append(slow(i, item, principal, default_source))
                    continue
                tz = t.tzinfo
                if tz is not _UTC:
                    if tz is None:
                        append(slow(i, item, principal, default_source))
                        continue
                    t = t.astimezone(_UTC)
                dims, dhash, pairs = dims_of(item.get("dimensions"))
                source = item.get("source") or default_source
                ext = item.get("external_id")
                if (type(source) is not str or not 0 < len(source) <= 100
                        or (ext is not None and (type(ext) is not str or not 0 < len(ext) <= 200))
                        or (scoped is not None and not scoped.may_see(dims))):
                    append(slow(i, item, principal, default_source))
                    continue
                append((i, mtype, value, t, pairs, dhash, source, ext, t.toordinal() - EPOCH_ORDINAL,
                        t.year * 12 + t.month - 1))
            except ValueError as exc:
                rejected.append({"index": i, "reason": str(exc)})
        return rows, rejected

    def _row(self, i: int, item: Any, principal: Principal | None, default_source: str) -> _Row:
        if not isinstance(item, dict):
            raise ValueError("item must be an object")
        if not item.keys() <= ITEM_FIELDS:
            raise ValueError(f"unknown field(s): {', '.join(sorted(set(item) - ITEM_FIELDS))}")
        mtype = item.get("type")
        if not isinstance(mtype, str) or mtype not in self._types:
            if not isinstance(mtype, str) or not KEY_RE.match(mtype):
                raise ValueError("type must be lower-case letters, digits and _ (e.g. \"leads\")")
            self._types.add(mtype)
        if "value" not in item:
            raise ValueError("value is required")
        value = to_micro(item["value"])
        if "time" not in item:
            raise ValueError("time is required")
        time = parse_time(item["time"])
        dims, dhash, pairs = self._dims(item.get("dimensions"))
        source = item.get("source") or default_source
        if not isinstance(source, str) or not (1 <= len(source) <= 100):
            raise ValueError("source must be 1 to 100 characters")
        ext = item.get("external_id")
        if ext is not None and (not isinstance(ext, str) or not (1 <= len(ext) <= 200)):
            raise ValueError("external_id must be a string of 1 to 200 characters")
        if principal is not None and principal.scopes and not principal.may_see(dims):
            raise ValueError(f"dimensions are outside your scopes ({', '.join(sorted(principal.scopes))})")
        day = time.toordinal() - EPOCH_ORDINAL  # `time` is UTC already
        return (i, mtype, value, time, pairs, dhash, source, ext, day, time.year * 12 + time.month - 1)

    async def ingest(
        self, db: Database, items: Sequence[Any], principal: Principal | None, default_source: str,
    ) -> IngestResult:
        """Validate and write one batch in its own transaction (retried once on a racing duplicate)."""
        if len(items) > MAX_BATCH:
            raise Invalid.on("items", f"at most {MAX_BATCH:,} measurements per batch (got {len(items):,})")
        rows, rejected = self.validate(items, principal, default_source)
        for attempt in range(3):
            try:
                async with db.transaction() as s:
                    return await self.write(s, rows, rejected)
            except IntegrityError:
                # A concurrent batch committed one of our external ids first; the re-run sees it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def write(self, s: AsyncSession, rows: list[_Row], rejected: list[dict[str, Any]]) -> IngestResult:
        """Write validated rows with the caller's session (used by event handlers too)."""
        now = utcnow()
        result = IngestResult(rejected=list(rejected))
        fresh, dups = await self._drop_duplicates(s, rows)
        result.duplicates = len(dups)
        new_dimsets: dict[str, int] = {}
        new_seen: set[tuple[str, str]] = set()
        if fresh:
            ids = await self._dimset_ids(s, fresh, new_dimsets)
            tp = time_param(s)
            received = tp(now)
            await executemany(s, INSERT_RAW, [
                (mtype, value, tp(t), day, month, ids[h], src, ext, received)
                for _, mtype, value, t, _, h, src, ext, day, month in fresh
            ])
            await self._rollup(s, fresh, ids)
            await self._first_sightings(s, fresh, now, new_seen)
        result.accepted = len(fresh)
        await self._quality(s, now, fresh, dups, result.rejected)
        self._after_commit(s, new_dimsets, new_seen)
        return result

    async def _drop_duplicates(self, s: AsyncSession, rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
        """Rows not seen before (in this batch or stored), and the duplicates; both in item order.

        One query per source asks which of the batch's external ids are stored
        already. When none is and none repeats (the usual batch), every row is fresh
        without a per-row loop.
        """
        sources = set(map(_source_of, rows))
        if len(sources) == 1:
            by_source = {sources.pop(): list(filter(None, map(_external_id_of, rows)))}  # ids are never ""
        else:
            by_source = {}
            for r in rows:
                if r[EXTERNAL_ID] is not None:
                    by_source.setdefault(r[SOURCE], []).append(r[EXTERNAL_ID])
        taken: set[tuple[str, str]] = set()
        conn = await s.connection()
        repeats = False
        for src, exts in by_source.items():
            if not exts:
                continue
            repeats = repeats or len(set(exts)) != len(exts)
            for chunk in _chunks(exts, MAX_BATCH):
                sql, param = _stored_ids_query(conn.dialect.name, chunk)
                found = await conn.exec_driver_sql(_dollar(conn.dialect.paramstyle, sql), (src, param))
                taken.update((src, e) for (e,) in found)
        if not taken and not repeats:
            return rows, []
        fresh: list[_Row] = []
        dups: list[_Row] = []
        for r in rows:
            if r[EXTERNAL_ID] is None:
                fresh.append(r)
                continue
            key = (r[SOURCE], r[EXTERNAL_ID])
            if key in taken:
                dups.append(r)
            else:
                taken.add(key)
                fresh.append(r)
        return fresh, dups

    async def _dimset_ids(self, s: AsyncSession, rows: list[_Row], new: dict[str, int]) -> dict[str, int]:
        ids: dict[str, int] = {}
        missing: dict[str, dict[str, str]] = {}
        for r in rows:
            h = r[HASH]
            if h in ids or h in missing:
                continue
            cached = self.dimset_ids.get(h)
            if cached is not None:
                ids[h] = cached
            else:
                missing[h] = dict(r[DIMS])
        if missing:
            d = dimension_sets.c
            await s.execute(
                insert_ignore(s, dimension_sets, ["hash"]),
                [{"hash": h, "dims": dims} for h, dims in missing.items()],
            )
            for chunk in _chunks(list(missing), 900):
                for h, i in await s.execute(select(d.hash, d.id).where(d.hash.in_(chunk))):
                    ids[h] = i
                    new[h] = i
        return ids

    async def _rollup(self, s: AsyncSession, rows: list[_Row], ids: dict[str, int]) -> None:
        """Upsert the batch's (count, sum, min, max) per (type, day|month, dimension set).

        Rows are summed per day in one pass, the days per month, and each table gets
        one executemany, in key order (so concurrent batches lock rollup rows in the
        same order on PostgreSQL).
        """
        daily: dict[tuple[str, int, int], list[int]] = {}
        get = daily.get
        for _, mtype, v, _, _, h, _, _, day, _ in rows:
            key = (mtype, day, ids[h])
            a = get(key)
            if a is None:
                daily[key] = [1, v, v, v]
            else:
                a[0] += 1
                a[1] += v
                if v < a[2]:
                    a[2] = v
                elif v > a[3]:
                    a[3] = v
        monthly: dict[tuple[str, int, int], list[int]] = {}
        month_of: dict[int, int] = {}
        for (mtype, day, ds), (n, total, lo, hi) in daily.items():
            month = month_of.get(day)
            if month is None:
                month = month_of[day] = _month_of_day(day)
            key = (mtype, month, ds)
            a = monthly.get(key)
            if a is None:
                monthly[key] = [n, total, lo, hi]
            else:
                a[0] += n
                a[1] += total
                if lo < a[2]:
                    a[2] = lo
                if hi > a[3]:
                    a[3] = hi
        for sql, agg in ((UPSERT_DAILY, daily), (UPSERT_MONTHLY, monthly)):
            await executemany(s, sql, sorted((*k, *a) for k, a in agg.items()))

    async def _first_sightings(
        self, s: AsyncSession, rows: list[_Row], now: dt.datetime, new: set[tuple[str, str]],
    ) -> None:
        values: dict[tuple[str, str], str] = {}
        combos: set[tuple[str, str]] = set()
        for r in rows:
            combo = (r[TYPE], r[HASH])
            if combo in combos:  # a batch repeats few (type, dimension set) pairs
                continue
            combos.add(combo)
            for pair in (("type", r[TYPE]), *r[DIMS]):
                if pair not in self.seen and pair not in values:
                    values[pair] = r[SOURCE]
        if not values:
            return
        v = seen_values.c
        known: set[tuple[str, str]] = set()
        for chunk in _chunks(list(values), 400):
            cond = tuple_(v.dimension, v.value).in_(chunk)
            known.update((a, b) for a, b in await s.execute(select(v.dimension, v.value).where(cond)))
        unseen = [k for k in values if k not in known]
        if unseen:
            await s.execute(
                insert_ignore(s, seen_values, ["dimension", "value"]),
                [{"dimension": a, "value": b, "first_seen_at": now, "first_source": values[(a, b)]}
                 for a, b in unseen],
            )
        new.update(values)

    async def _quality(
        self, s: AsyncSession, now: dt.datetime, fresh: list[_Row], dups: list[_Row], rejected: list[dict[str, Any]],
    ) -> None:
        records: list[dict[str, Any]] = []
        if rejected:
            records.append({"kind": "rejected", "at": now, "source": None, "count": len(rejected),
                            "detail": {"items": rejected[:1000]}})
        if dups:
            records.append({
                "kind": "duplicate", "at": now, "source": dups[0][SOURCE], "count": len(dups),
                "detail": {"sample": [{"index": r[INDEX], "source": r[SOURCE], "external_id": r[EXTERNAL_ID]}
                                      for r in dups[:SAMPLE]]},
            })
        cutoff = now - self.late_after
        late = [r for r in fresh if r[TIME] < cutoff]
        if late:
            worst = now - min(r[TIME] for r in late)
            records.append({
                "kind": "late", "at": now, "source": late[0][SOURCE], "count": len(late),
                "detail": {
                    "max_lateness_hours": round(worst.total_seconds() / 3600, 1),
                    "sample": [{"index": r[INDEX], "type": r[TYPE], "time": r[TIME].isoformat(),
                                "external_id": r[EXTERNAL_ID]} for r in late[:SAMPLE]],
                },
            })
        if records:
            await s.execute(insert(quality_issues), records)


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


# ---------------------------------------------------------------- CSV


CSV_FIELDS = {"type", "value", "time", "source", "external_id"}


def csv_items(text: str) -> list[dict[str, Any]]:
    """CSV rows to measurement items: known columns by name, every other column is a dimension."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise Invalid.on("body", "the CSV has no header row")
    header = [h.strip() for h in reader.fieldnames]
    missing = {"type", "value", "time"} - set(header)
    if missing:
        raise Invalid.on("body", f"the CSV header lacks column(s): {', '.join(sorted(missing))}")
    reader.fieldnames = header
    items: list[dict[str, Any]] = []
    for row in reader:
        if len(items) >= MAX_BATCH:
            raise Invalid.on("body", f"at most {MAX_BATCH:,} rows per import")
        item: dict[str, Any] = {}
        dims: dict[str, str] = {}
        for k, v in row.items():
            if k is None:  # more cells than header columns
                item["_extra"] = v
                continue
            v = (v or "").strip()
            if not v:
                continue
            if k in CSV_FIELDS:
                item[k] = v
            else:
                dims[k.removeprefix("dim.")] = v
        if dims:
            item["dimensions"] = dims
        items.append(item)
    return items


# ---------------------------------------------------------------- rebuild


async def rebuild_rollups(
    s: AsyncSession, *, types: Sequence[str] | None = None, from_day: int | None = None, to_day: int | None = None,
) -> int:
    """Recompute the rollups from raw rows (all, or some types / a day range); returns daily rows written.

    A day range is widened to whole UTC months so the monthly rollups stay complete.
    """
    m = measurements.c
    if from_day is not None:
        from_day = _day_of(_date_of(from_day).replace(day=1))
    if to_day is not None:
        last = _date_of(to_day)
        to_day = _day_of(dt.date(last.year + last.month // 12, last.month % 12 + 1, 1)) - 1
    written = 0
    for table, period in ((rollups_daily, "day"), (rollups_monthly, "month")):
        r = table.c
        cond_r, cond_m = [], []
        if types:
            cond_r.append(r.type.in_(types))
            cond_m.append(m.type.in_(types))
        if from_day is not None:
            cond_m.append(m.day >= from_day)
            cond_r.append(r[period] >= (from_day if period == "day" else _month_of_day(from_day)))
        if to_day is not None:
            cond_m.append(m.day <= to_day)
            cond_r.append(r[period] <= (to_day if period == "day" else _month_of_day(to_day)))
        await s.execute(delete(table).where(and_(True, *cond_r)))
        agg = (
            select(m.type, m[period], m.dimset_id, func.count(), func.sum(m.value), func.min(m.value),
                   func.max(m.value))
            .where(and_(True, *cond_m))
            .group_by(m.type, m[period], m.dimset_id)
        )
        await s.execute(
            insert(table).from_select(["type", period, "dimset_id", "count", "sum", "min", "max"], agg)
        )
        if period == "day":
            written = int(await s.scalar(select(func.count()).select_from(table).where(and_(True, *cond_r))) or 0)
    return written


def _date_of(day: int) -> dt.date:
    return EPOCH + dt.timedelta(days=day)


def _day_of(d: dt.date) -> int:
    return (d - EPOCH).days


def _month_of_day(day: int) -> int:
    d = _date_of(day)
    return d.year * 12 + d.month - 1


# ---------------------------------------------------------------- data quality


def _norm(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


async def quality_report(
    s: AsyncSession, since: dt.datetime, known_types: set[str], limit: int = 200,
) -> dict[str, Any]:
    """What went wrong with incoming data since `since`, newest first."""
    q = quality_issues.c
    rows = (await s.execute(
        select(quality_issues).where(q.at >= since).order_by(q.at.desc(), q.id.desc())
    )).all()
    rejected: list[dict[str, Any]] = []
    totals = {"rejected": 0, "duplicate": 0, "late": 0}
    batches: dict[str, list[dict[str, Any]]] = {"duplicate": [], "late": []}
    for r in rows:
        totals[r.kind] += r.count
        if r.kind == "rejected":
            for item in r.detail.get("items", []):
                if len(rejected) < limit:
                    rejected.append({"at": r.at.isoformat(), **item})
        elif len(batches[r.kind]) < limit:
            batches[r.kind].append({"at": r.at.isoformat(), "source": r.source, "count": r.count, **r.detail})
    v = seen_values.c
    fresh = (await s.execute(
        select(seen_values).where(v.first_seen_at >= since).order_by(v.first_seen_at.desc(), v.dimension, v.value)
    )).all()
    dims = {r.dimension for r in fresh}
    older: dict[str, dict[str, list[str]]] = {}
    if dims:
        for r in await s.execute(select(v.dimension, v.value).where(v.dimension.in_(dims), v.first_seen_at < since)):
            older.setdefault(r.dimension, {}).setdefault(_norm(r.value), []).append(r.value)
    new_values, new_types = [], []
    for r in fresh[:limit]:
        similar = sorted(older.get(r.dimension, {}).get(_norm(r.value), []))
        entry = {"dimension": r.dimension, "value": r.value, "first_seen_at": r.first_seen_at.isoformat(),
                 "first_source": r.first_source, "similar_to": similar}
        if r.dimension == "type":
            entry["used_by_metric"] = r.value in known_types
            new_types.append(entry)
        else:
            new_values.append(entry)
    return {
        "since": since.isoformat(),
        "rejected": {"count": totals["rejected"], "items": rejected},
        "duplicates_dropped": {"count": totals["duplicate"], "batches": batches["duplicate"]},
        "late_arrivals": {"count": totals["late"], "batches": batches["late"]},
        "new_measurement_types": new_types,
        "new_dimension_values": new_values,
    }
