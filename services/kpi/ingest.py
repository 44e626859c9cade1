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
    """How a UTC datetime goes to the driver: SQLAlchemy's SQLite text format, or as is."""
    if session.bind.dialect.name == "sqlite":
        return lambda t: t.strftime("%Y-%m-%d %H:%M:%S.%f")
    return lambda t: t


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


@dataclass
class _Row:
    index: int
    type: str
    value: int
    time: dt.datetime
    dims: dict[str, str]
    hash: str
    source: str
    external_id: str | None
    day: int
    month: int


class Ingestor:
    """Writes measurement batches; keeps per-database caches of committed lookups."""

    def __init__(self, *, late_after: dt.timedelta = dt.timedelta(hours=48)):
        self.late_after = late_after
        self.dimset_ids: dict[str, int] = {}
        self.seen: set[tuple[str, str]] = set()
        self._types: set[str] = set()
        self._dims_cache: dict[tuple[tuple[Any, Any], ...], tuple[dict[str, str], str]] = {}

    def _dims(self, raw: Any) -> tuple[dict[str, str], str]:
        """Canonical dimensions and their hash; cached, since a batch repeats few dimension sets."""
        if isinstance(raw, dict):
            try:
                key = tuple(sorted(raw.items()))
                hit = self._dims_cache.get(key)
            except TypeError:  # unhashable or unorderable values: validate the slow way
                key, hit = None, None
            if hit is not None:
                return hit
        else:
            key = None
        dims = canonical_dims(raw)
        result = (dims, dims_hash(dims))
        if key is not None and len(self._dims_cache) < 100_000:
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
        rows: list[_Row] = []
        rejected: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            try:
                rows.append(self._row(i, item, principal, default_source))
            except ValueError as exc:
                rejected.append({"index": i, "reason": str(exc)})
        return rows, rejected

    def _row(self, i: int, item: Any, principal: Principal | None, default_source: str) -> _Row:
        if not isinstance(item, dict):
            raise ValueError("item must be an object")
        if not item.keys() <= ITEM_FIELDS:
            raise ValueError(f"unknown field(s): {', '.join(sorted(set(item) - ITEM_FIELDS))}")
        mtype = item.get("type")
        if mtype not in self._types:
            if not isinstance(mtype, str) or not KEY_RE.match(mtype):
                raise ValueError("type must be lower-case letters, digits and _ (e.g. \"leads\")")
            self._types.add(mtype)
        if "value" not in item:
            raise ValueError("value is required")
        value = to_micro(item["value"])
        if "time" not in item:
            raise ValueError("time is required")
        time = parse_time(item["time"])
        dims, dhash = self._dims(item.get("dimensions"))
        source = item.get("source") or default_source
        if not isinstance(source, str) or not (1 <= len(source) <= 100):
            raise ValueError("source must be 1 to 100 characters")
        ext = item.get("external_id")
        if ext is not None and (not isinstance(ext, str) or not (1 <= len(ext) <= 200)):
            raise ValueError("external_id must be a string of 1 to 200 characters")
        if principal is not None and principal.scopes and not principal.may_see(dims):
            raise ValueError(f"dimensions are outside your scopes ({', '.join(sorted(principal.scopes))})")
        day = time.toordinal() - EPOCH_ORDINAL  # `time` is UTC already
        return _Row(i, mtype, value, time, dims, dhash, source, ext, day, time.year * 12 + time.month - 1)

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
                (r.type, r.value, tp(r.time), r.day, r.month, ids[r.hash], r.source, r.external_id, received)
                for r in fresh
            ])
            await self._rollup(s, fresh, ids)
            await self._first_sightings(s, fresh, now, new_seen)
        result.accepted = len(fresh)
        await self._quality(s, now, fresh, dups, result.rejected)
        self._after_commit(s, new_dimsets, new_seen)
        return result

    async def _drop_duplicates(self, s: AsyncSession, rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
        fresh: list[_Row] = []
        dups: list[_Row] = []
        keyed: dict[tuple[str, str], _Row] = {}
        for r in rows:
            if r.external_id is None:
                fresh.append(r)
            elif (r.source, r.external_id) in keyed:
                dups.append(r)
            else:
                keyed[(r.source, r.external_id)] = r
        existing: set[tuple[str, str]] = set()
        by_source: dict[str, list[str]] = {}
        for src, ext in keyed:
            by_source.setdefault(src, []).append(ext)
        conn = await s.connection()
        for src, exts in by_source.items():
            for chunk in _chunks(exts, 900):
                sql = _dollar(conn.dialect.paramstyle,
                              "SELECT external_id FROM measurements WHERE source = ? AND external_id IN ("
                              + ", ".join("?" * len(chunk)) + ")")
                found = await conn.exec_driver_sql(sql, (src, *chunk))
                existing.update((src, e) for (e,) in found)
        for key, r in keyed.items():
            (dups if key in existing else fresh).append(r)
        fresh.sort(key=lambda r: r.index)
        return fresh, dups

    async def _dimset_ids(self, s: AsyncSession, rows: list[_Row], new: dict[str, int]) -> dict[str, int]:
        ids: dict[str, int] = {}
        missing: dict[str, dict[str, str]] = {}
        for r in rows:
            if r.hash in ids or r.hash in missing:
                continue
            cached = self.dimset_ids.get(r.hash)
            if cached is not None:
                ids[r.hash] = cached
            else:
                missing[r.hash] = r.dims
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
        for sql, period in ((UPSERT_DAILY, "day"), (UPSERT_MONTHLY, "month")):
            agg: dict[tuple[str, int, int], list[int]] = {}
            for r in rows:
                key = (r.type, getattr(r, period), ids[r.hash])
                a = agg.get(key)
                if a is None:
                    agg[key] = [1, r.value, r.value, r.value]
                else:
                    a[0] += 1
                    a[1] += r.value
                    if r.value < a[2]:
                        a[2] = r.value
                    if r.value > a[3]:
                        a[3] = r.value
            await executemany(s, sql, [(t, p, ds, a[0], a[1], a[2], a[3]) for (t, p, ds), a in agg.items()])

    async def _first_sightings(
        self, s: AsyncSession, rows: list[_Row], now: dt.datetime, new: set[tuple[str, str]],
    ) -> None:
        values: dict[tuple[str, str], str] = {}
        combos: set[tuple[str, str]] = set()
        for r in rows:
            if (r.type, r.hash) in combos:  # a batch repeats few (type, dimension set) pairs
                continue
            combos.add((r.type, r.hash))
            for pair in (("type", r.type), *r.dims.items()):
                if pair not in self.seen and pair not in values:
                    values[pair] = r.source
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
                "kind": "duplicate", "at": now, "source": dups[0].source, "count": len(dups),
                "detail": {"sample": [{"index": r.index, "source": r.source, "external_id": r.external_id}
                                      for r in dups[:SAMPLE]]},
            })
        late = [r for r in fresh if now - r.time > self.late_after]
        if late:
            worst = max(now - r.time for r in late)
            records.append({
                "kind": "late", "at": now, "source": late[0].source, "count": len(late),
                "detail": {
                    "max_lateness_hours": round(worst.total_seconds() / 3600, 1),
                    "sample": [{"index": r.index, "type": r.type, "time": r.time.isoformat(),
                                "external_id": r.external_id} for r in late[:SAMPLE]],
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
