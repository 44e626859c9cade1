"""Measurement ingest: validation, idempotency, raw rows, incremental rollups, data quality.

One batch is one transaction: the raw rows, their daily rollups, the new
dimension sets, first sightings and quality records commit together, so the
rollups always equal the aggregation of the raw rows (`rebuild_rollups` proves
it by recomputing them). Items are judged one by one: a bad item is reported
in `rejected` with its index and reason, the others are accepted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from operator import itemgetter
from typing import Any

from sqlalchemy import Integer, Table, and_, delete, event, func, insert, literal_column, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.kpi.formula import KEY_RE
from services.kpi.models import (
    MAX_ROLLUP_SUM,
    ROLLUP_SUM_RULE,
    dimension_sets,
    measurements,
    quality_issues,
    rollups_daily,
    rollups_monthly,
    seen_values,
)
from shared.bounds import MAX_DATE, MIN_DATE, RANGE_TEXT
from shared.csvtext import read_csv
from shared.db import Database, utcnow, violated_check
from shared.errors import Conflict, Invalid
from shared.identity import Principal

MAX_BATCH = 10_000
MICRO = 1_000_000
MAX_ABS_VALUE = Decimal(10) ** 10  # one value; a rollup's sum of them is bounded by MAX_ROLLUP_SUM (models)
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
        raise ValueError('value must be a decimal string such as "12.50", not a floating-point number')
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
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"time {value!r} has no UTC offset (add Z or +hh:mm)")
    # shared.bounds, as for every instant the API takes: the calendar day in the time's own offset, checked
    # before converting to UTC (which overflows at the ends of Python's dates, years 1 and 9999)
    if not MIN_DATE <= t.date() <= MAX_DATE:
        raise ValueError(f"time {value!r} must lie {RANGE_TEXT}")
    return t.astimezone(dt.UTC)


def time_text(t: dt.datetime) -> str:
    """A UTC datetime as SQLite stores it: SQLAlchemy's DateTime text "YYYY-MM-DD HH:MM:SS.ffffff"."""
    return t.isoformat(" ", "microseconds")[:26]  # [:26] drops the "+00:00" of a UTC datetime


def iso_time_text(s: str) -> str | None:
    """`time_text` of the UTC time that `fromisoformat(s)` parsed, by slicing `s`; None: use `time_text`.

    Only the common shapes are sliced: "YYYY-MM-DD?HH:MM:SS" with "T" or " " between,
    optionally ".fff" or ".ffffff", then "Z" or "+00:00". `s` must be a string that
    `fromisoformat` accepted; those shapes then say exactly which instant it is, so
    the slice equals `time_text` of the parsed datetime (about 3x faster).
    """
    if s[-1] == "Z":
        end = len(s) - 1
    elif s[-6:] == "+00:00":
        end = len(s) - 6
    else:
        return None
    if (
        end not in _TEXT_PADDING
        or s[4] != "-"
        or s[7] != "-"
        or s[13] != ":"
        or s[16] != ":"
        or s[10] not in "T "
        or (end != 19 and s[19] != ".")
    ):
        return None
    return s[:10] + " " + s[11:end] + _TEXT_PADDING[end]


_TEXT_PADDING = {19: ".000000", 23: "000", 26: ""}  # end of the seconds (and fraction) -> what completes it


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


def _dollar(paramstyle: str, sql: str) -> str:
    """`?` placeholders in the driver's style (asyncpg numbers them: $1, $2, ...)."""
    if paramstyle != "numeric_dollar":
        return sql
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


# ---------------------------------------------------------------- ingest


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


# One validated item, as a plain tuple: (index, type, value, time, dims, hash, source,
# external_id, day, month, time_text), dims being the sorted (name, value) pairs and
# time_text the time as SQLite stores it (`time_text`). 10,000 of them
# per batch, so no per-item objects beyond it, and nothing in it is a mutable
# container: the garbage collector stops tracking such tuples at its first look,
# so a batch's rows do not make every later collection slower.
_Row = tuple[int, str, int, dt.datetime, tuple[tuple[str, str], ...], str, str, "str | None", int, int, str]
INDEX, TYPE, VALUE, TIME, DIMS, HASH, SOURCE, EXTERNAL_ID, DAY, MONTH, TIME_TEXT = range(11)
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
        if key is not None and len(self._dims_cache) < 100_000 and all(type(v) is str for v in raw.values()):
            self._dims_cache[key] = result
        return result

    def _after_commit(self, session: AsyncSession, dimsets: dict[str, int], seen: set[tuple[str, str]]) -> None:
        # Cache only what committed: a rolled-back dimension set must not be remembered.
        def remember(_s: Any) -> None:
            self.dimset_ids.update(dimsets)
            self.seen.update(seen)

        event.listen(session.sync_session, "after_commit", remember, once=True)

    def validate(
        self,
        items: Sequence[Any],
        principal: Principal | None,
        default_source: str,
        start: int = 0,
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
        iso_text = iso_time_text
        scoped = principal if principal is not None and principal.scopes else None
        for i, item in enumerate(items, start):
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
                    text = iso_text(t)
                    t = _fromisoformat(t)
                except (ValueError, IndexError):  # IndexError: "" (iso_text looks at its last character)
                    append(slow(i, item, principal, default_source))
                    continue
                tz = t.tzinfo
                if tz is None or not MIN_DATE <= t.date() <= MAX_DATE:  # the bounds: see parse_time
                    append(slow(i, item, principal, default_source))
                    continue
                if tz is not _UTC:
                    t = t.astimezone(_UTC)
                if text is None:
                    text = time_text(t)
                dims, dhash, pairs = dims_of(item.get("dimensions"))
                source = item.get("source") or default_source
                ext = item.get("external_id")
                if (
                    type(source) is not str
                    or not 0 < len(source) <= 100
                    or (ext is not None and (type(ext) is not str or not 0 < len(ext) <= 200))
                    or (scoped is not None and not scoped.may_see(dims))
                ):
                    append(slow(i, item, principal, default_source))
                    continue
                append(
                    (
                        i,
                        mtype,
                        value,
                        t,
                        pairs,
                        dhash,
                        source,
                        ext,
                        t.toordinal() - EPOCH_ORDINAL,
                        t.year * 12 + t.month - 1,
                        text,
                    )
                )
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
                raise ValueError('type must be lower-case letters, digits and _ (e.g. "leads")')
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
        return (i, mtype, value, time, pairs, dhash, source, ext, day, time.year * 12 + time.month - 1, time_text(time))

    async def ingest(
        self,
        db: Database,
        items: Sequence[Any],
        principal: Principal | None,
        default_source: str,
    ) -> IngestResult:
        """Validate and write one batch in its own transaction (retried once on a racing duplicate)."""
        if len(items) > MAX_BATCH:
            raise Invalid.on("items", f"at most {MAX_BATCH:,} measurements per batch (got {len(items):,})")
        if db.is_sqlite and len(items) > _VALUES_ROWS:
            async with db.transaction() as s:
                return await self._validate_and_write(s, items, principal, default_source)
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
        candidates, dups = _first_occurrences(rows)
        new_dimsets: dict[str, int] = {}
        ids: dict[str, int] = {}
        fresh: list[_Row] = []
        if candidates:
            await self._dimset_ids(s, candidates, new_dimsets, ids)
            fresh, stored = await _insert_raw(s, candidates, ids, now)
            if stored:
                dups = sorted(dups + stored, key=_index_of) if dups else stored
        return await self._finish(s, now, fresh, dups, list(rejected), ids, new_dimsets)

    async def _validate_and_write(
        self,
        s: AsyncSession,
        items: Sequence[Any],
        principal: Principal | None,
        default_source: str,
    ) -> IngestResult:
        """SQLite: `validate` + `write` of one batch, validating each chunk while the previous one is inserted.

        The batch is cut into chunks of `_VALUES_ROWS` items; each chunk's multi-row
        INSERT runs in the driver's thread (SQLite works without the GIL) while this
        thread validates the next chunk, so the Python and SQLite halves of the work
        overlap instead of adding up. The answer is the same as `write` gives: a repeat
        of an external id earlier in the batch is skipped by the unique index like a
        stored one (chunks are inserted in item order, so the first occurrence wins),
        and a chunk whose row count falls short has its inserted keys read back by id
        range. The transaction (BEGIN IMMEDIATE) is held from the first chunk on.
        """
        now = utcnow()
        conn = await s.connection()
        driver = (await conn.get_raw_connection()).driver_connection
        received = time_text(now)
        rejected: list[dict[str, Any]] = []
        fresh: list[_Row] = []
        dups: list[_Row] = []
        ids: dict[str, int] = {}
        new_dimsets: dict[str, int] = {}
        pending: Any = None
        pending_rows: list[_Row] = []
        inserts = _SqliteInserts(driver)

        async def landed() -> None:
            new, stored = await inserts.settle(await pending, pending_rows)
            fresh.extend(new)
            dups.extend(stored)

        for lo in range(0, len(items), _VALUES_ROWS):
            rows, bad = self.validate(items[lo : lo + _VALUES_ROWS], principal, default_source, lo)
            rejected.extend(bad)
            if pending is not None:
                await landed()
                pending = None
            if rows:
                await self._dimset_ids(s, rows, new_dimsets, ids)
                params = _raw_params(rows, ids, received)
                pending = asyncio.ensure_future(driver.execute(_values_sql(len(rows)), params))
                pending_rows = rows
                await asyncio.sleep(0)  # let the task hand the statement to the driver's thread
        if pending is not None:
            await landed()
        inserts.check()
        return await self._finish(s, now, fresh, dups, rejected, ids, new_dimsets)

    async def _finish(
        self,
        s: AsyncSession,
        now: dt.datetime,
        fresh: list[_Row],
        dups: list[_Row],
        rejected: list[dict[str, Any]],
        ids: dict[str, int],
        new_dimsets: dict[str, int],
    ) -> IngestResult:
        """After the raw rows: rollups, first sightings and quality records of the batch; the answer."""
        new_seen: set[tuple[str, str]] = set()
        if fresh:
            daily, monthly, combos = _aggregate(fresh, ids)
            await _rollup(s, daily, monthly)
            await self._first_sightings(s, combos, now, new_seen)
        await self._quality(s, now, fresh, dups, rejected)
        self._after_commit(s, new_dimsets, new_seen)
        return IngestResult(accepted=len(fresh), duplicates=len(dups), rejected=rejected)

    async def _dimset_ids(
        self,
        s: AsyncSession,
        rows: list[_Row],
        new: dict[str, int],
        ids: dict[str, int],
    ) -> None:
        """Add the dimension set id of every row's hash to `ids` (inserting unknown sets; those also go to `new`)."""
        missing: dict[str, dict[str, str]] = {}
        cache = self.dimset_ids
        for h, pairs in {r[HASH]: r[DIMS] for r in rows}.items():
            if h in ids:
                continue
            cached = cache.get(h)
            if cached is not None:
                ids[h] = cached
            else:
                missing[h] = dict(pairs)
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

    async def _first_sightings(
        self,
        s: AsyncSession,
        combos: _Combos,
        now: dt.datetime,
        new: set[tuple[str, str]],
    ) -> None:
        """Record the type and dimension values not seen before (`_aggregate`'s combos, in item order)."""
        values: dict[tuple[str, str], str] = {}
        seen = self.seen
        for (mtype, _), (source, pairs) in combos.items():
            for pair in (("type", mtype), *pairs):
                if pair not in seen and pair not in values:
                    values[pair] = source
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
                [{"dimension": a, "value": b, "first_seen_at": now, "first_source": values[(a, b)]} for a, b in unseen],
            )
        new.update(values)

    async def _quality(
        self,
        s: AsyncSession,
        now: dt.datetime,
        fresh: list[_Row],
        dups: list[_Row],
        rejected: list[dict[str, Any]],
    ) -> None:
        records: list[dict[str, Any]] = []
        if rejected:
            records.append(
                {
                    "kind": "rejected",
                    "at": now,
                    "source": None,
                    "count": len(rejected),
                    "detail": {"items": rejected[:1000]},
                }
            )
        if dups:
            records.append(
                {
                    "kind": "duplicate",
                    "at": now,
                    "source": dups[0][SOURCE],
                    "count": len(dups),
                    "detail": {
                        "sample": [
                            {"index": r[INDEX], "source": r[SOURCE], "external_id": r[EXTERNAL_ID]}
                            for r in dups[:SAMPLE]
                        ]
                    },
                }
            )
        cutoff = now - self.late_after
        late = [r for r in fresh if r[TIME] < cutoff]
        if late:
            worst = now - min(r[TIME] for r in late)
            records.append(
                {
                    "kind": "late",
                    "at": now,
                    "source": late[0][SOURCE],
                    "count": len(late),
                    "detail": {
                        "max_lateness_hours": round(worst.total_seconds() / 3600, 1),
                        "sample": [
                            {
                                "index": r[INDEX],
                                "type": r[TYPE],
                                "time": r[TIME].isoformat(),
                                "external_id": r[EXTERNAL_ID],
                            }
                            for r in late[:SAMPLE]
                        ],
                    },
                }
            )
        if records:
            await s.execute(insert(quality_issues), records)


def _chunks(seq: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


# ---------------------------------------------------------------- raw rows and rollups


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


def _first_occurrences(rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
    """The rows whose (source, external_id) is the first of its kind in the batch, and the repeats.

    Both in item order. Rows without external_id are never repeats. When no id repeats
    (the usual batch), that is known from one set and every row is kept without a loop.
    """
    sources = set(map(_source_of, rows))
    if len(sources) <= 1:
        exts = list(filter(None, map(_external_id_of, rows)))  # ids are never ""
        if len(set(exts)) == len(exts):
            return rows, []
    first: list[_Row] = []
    repeats: list[_Row] = []
    taken: set[tuple[str, str]] = set()
    for r in rows:
        if r[EXTERNAL_ID] is not None:
            key = (r[SOURCE], r[EXTERNAL_ID])
            if key in taken:
                repeats.append(r)
                continue
            taken.add(key)
        first.append(r)
    return first, repeats


def _values_sql(n: int) -> str:
    sql = _VALUES_SQL.get(n)
    if sql is None:
        sql = _VALUES_SQL[n] = (
            f"INSERT INTO measurements ({RAW_COLUMNS}) VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * n)
            + _SKIP_STORED
        )
    return sql


RAW_COLUMNS = "type, value, time, day, month, dimset_id, source, external_id, received_at"
# One raw row per statement: the benchmark's bulk fill (the ingest path uses multi-row VALUES).
INSERT_RAW = f"INSERT INTO measurements ({RAW_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
# A stored (source, external_id) makes the row a duplicate: the unique index that
# guarantees it is also what finds it, in the same step as the insert.
_SKIP_STORED = " ON CONFLICT (source, external_id) DO NOTHING"
_VALUES_SQL: dict[int, str] = {}
_VALUES_ROWS = 1_000  # rows per multi-row INSERT on SQLite (9,000 parameters; the limit is 32,766)
_UNNEST_INSERT = (
    f"INSERT INTO measurements ({RAW_COLUMNS}) "
    "SELECT t.*, ?::timestamptz FROM unnest(?::varchar[], ?::bigint[], ?::timestamptz[], ?::int[], ?::int[], "
    "?::bigint[], ?::varchar[], ?::varchar[]) AS t" + _SKIP_STORED + " RETURNING source, external_id"
)
_index_of = itemgetter(INDEX)


async def _insert_raw(
    s: AsyncSession,
    rows: list[_Row],
    ids: dict[str, int],
    now: dt.datetime,
) -> tuple[list[_Row], list[_Row]]:
    """Insert the rows unless their (source, external_id) is stored: (inserted rows, duplicates).

    `rows` hold no repeated external id.

    SQLite: multi-row VALUES of 1,000 rows (one statement each instead of one per
    row), run on the driver connection (one trip to its thread per statement);
    `_SqliteInserts` tells the inserted rows from the skipped ones.
    PostgreSQL: one INSERT ... SELECT FROM unnest() of column arrays, RETURNING the
    keys of the new rows when some were skipped.
    """
    conn = await s.connection()
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
        returned = (await conn.exec_driver_sql(_dollar(conn.dialect.paramstyle, _UNNEST_INSERT), (now, *cols))).all()
        if len(returned) == len(rows):
            return rows, []
        return _split_inserted(rows, {(r[0], r[1]) for r in returned})
    driver = (await conn.get_raw_connection()).driver_connection
    received = time_text(now)
    inserts = _SqliteInserts(driver)
    fresh: list[_Row] = []
    stored: list[_Row] = []
    for chunk in _chunks(rows, _VALUES_ROWS):
        done = await driver.execute(_values_sql(len(chunk)), _raw_params(chunk, ids, received))
        new, old = await inserts.settle(done, list(chunk))
        fresh.extend(new)
        stored.extend(old)
    inserts.check()
    return fresh, stored


class _SqliteInserts:
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

    async def settle(self, done: Any, rows: list[_Row]) -> tuple[list[_Row], list[_Row]]:
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
            keys = set(map(tuple, got))
        return _split_inserted(rows, keys)

    def check(self) -> None:
        if self.first is not None and self.last - self.first + 1 != self.inserted:
            # only if the largest id were 2^63 - 1 (SQLite then picks at random)
            raise RuntimeError("measurement ids are not consecutive")


def _raw_params(rows: Sequence[_Row], ids: dict[str, int], received: str) -> list[Any]:
    """The parameters of `_values_sql(len(rows))`: the raw columns of each row, one flat list."""
    params: list[Any] = []
    extend = params.extend
    for _, mtype, value, _, _, h, src, ext, day, month, text in rows:
        extend((mtype, value, text, day, month, ids[h], src, ext, received))
    return params


def _split_inserted(rows: list[_Row], inserted: set[tuple[str, str]]) -> tuple[list[_Row], list[_Row]]:
    """(rows that were inserted, rows skipped as duplicates), given the keys the INSERT stored.

    Rows without external_id are always new. A key belongs to the first row that has it
    (rows are in item order, and the INSERT kept the first occurrence), so a repeat of
    it later in `rows` is a duplicate. `inserted` is consumed.
    """
    fresh: list[_Row] = []
    stored: list[_Row] = []
    for r in rows:
        if r[EXTERNAL_ID] is None:
            fresh.append(r)
            continue
        key = (r[SOURCE], r[EXTERNAL_ID])
        if key in inserted:
            inserted.discard(key)
            fresh.append(r)
        else:
            stored.append(r)
    return fresh, stored


_Agg = tuple[str, int, int, int, int, int, int]  # (type, day or month, dimset_id, count, sum, min, max)
_Combos = dict[tuple[str, str], tuple[str, tuple[tuple[str, str], ...]]]


def _aggregate(rows: list[_Row], ids: dict[str, int]) -> tuple[list[_Agg], list[_Agg], _Combos]:
    """The rollup deltas of `rows`: daily and monthly (count, sum, min, max) per key, in key order.

    Also the (type, dimension set) combinations in order of first appearance, each with
    the source and dimension pairs of its first row (for `_first_sightings`). One pass
    over the rows collects each daily key's values (a batch has few keys: 10,000
    measurements over 4 days and 320 dimension sets make ~2,500); count, sum, min and
    max are then taken per key by C loops, and the months from the days.
    """
    groups: dict[tuple[str, int, str], list[int]] = {}
    month_of: dict[int, int] = {}
    combos: _Combos = {}
    for _, mtype, value, _, pairs, h, src, _, day, month, _ in rows:
        key = (mtype, day, h)
        values = groups.get(key)
        if values is None:
            groups[key] = [value]
            month_of[day] = month
            if (mtype, h) not in combos:
                combos[(mtype, h)] = (src, pairs)
        else:
            values.append(value)
    daily = sorted([(mtype, day, ids[h], len(v), sum(v), min(v), max(v)) for (mtype, day, h), v in groups.items()])
    months: dict[tuple[str, int, int], list[int]] = {}
    for mtype, day, dimset, count, total, low, high in daily:
        key = (mtype, month_of[day], dimset)
        acc = months.get(key)
        if acc is None:
            months[key] = [count, total, low, high]
        else:
            acc[0] += count
            acc[1] += total
            if low < acc[2]:
                acc[2] = low
            if high > acc[3]:
                acc[3] = high
    monthly = sorted([(*key, *acc) for key, acc in months.items()])
    return daily, monthly, combos  # type: ignore[return-value]


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


# One batch's delta to a rollup must itself lie within the bound: the upsert's proposed row is the delta,
# and both databases check it before turning the insert into an update. A delta out of range is refused
# here, before it could overflow a 64-bit parameter; a delta in range added to a stored sum in range
# stays within +-2 * 10**18, inside 64 bits, and the CHECK constraint decides.
_DELTA_LIMIT = MAX_ROLLUP_SUM
_ROLLUP_CHECKS = frozenset({"ck_rollups_daily_sum_in_range", "ck_rollups_monthly_sum_in_range"})
_SUM = 4


async def _rollup(s: AsyncSession, daily: list[_Agg], monthly: list[_Agg]) -> None:
    """Upsert the batch's rollup deltas (`_aggregate`), in key order.

    Key order makes concurrent batches lock rollup rows in the same order on
    PostgreSQL. SQLite: one prepared statement run per key on the driver connection
    (executemany); PostgreSQL: one INSERT ... SELECT FROM unnest() per table.
    A delta or a new sum outside +-MAX_ROLLUP_SUM is a Conflict (409), and the
    caller's transaction (raw rows and all) rolls back: a delta is judged here
    (`_DELTA_LIMIT`), a new sum by the database's CHECK constraint (raised by the
    driver itself on SQLite).
    """
    for deltas in (daily, monthly):
        if deltas:
            sums = list(map(itemgetter(_SUM), deltas))
            if min(sums) <= -_DELTA_LIMIT or max(sums) >= _DELTA_LIMIT:
                raise Conflict(ROLLUP_SUM_RULE)
    conn = await s.connection()
    dialect = conn.dialect.name
    driver = None if dialect == "postgresql" else (await conn.get_raw_connection()).driver_connection
    try:
        for period, deltas in (("day", daily), ("month", monthly)):
            if not deltas:
                continue
            sql = _UPSERT_SQL[(dialect, period)]
            if driver is not None:
                await driver.executemany(sql, deltas)
            else:
                await conn.exec_driver_sql(_dollar(conn.dialect.paramstyle, sql), tuple(zip(*deltas, strict=True)))
    except Exception as exc:
        if violated_check(exc) in _ROLLUP_CHECKS:
            raise Conflict(ROLLUP_SUM_RULE) from exc
        raise


_LOW_BITS = literal_column("4294967295", Integer)  # 2**32 - 1
_HIGH_SHIFT = literal_column("32", Integer)


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


# ---------------------------------------------------------------- CSV


CSV_FIELDS = {"type", "value", "time", "source", "external_id"}


def csv_items(text: str) -> list[dict[str, Any]]:
    """CSV rows to measurement items: known columns by name, every other column is a dimension."""
    header, rows = read_csv(text)
    if not header:
        raise Invalid.on("body", "the CSV has no header row")
    missing = {"type", "value", "time"} - set(header)
    if missing:
        raise Invalid.on("body", f"the CSV header lacks column(s): {', '.join(sorted(missing))}")
    items: list[dict[str, Any]] = []
    for row in rows:
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
    s: AsyncSession,
    *,
    types: Sequence[str] | None = None,
    from_day: int | None = None,
    to_day: int | None = None,
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
        total: Any = func.sum(m.value)
        if s.bind.dialect.name != "postgresql":
            # SQLite: a group's sum fits (it is a rollup's), but a running sum inside sum() could pass 64 bits
            # on the way; the parts cannot, and hi * 2**32 + lo past 64 bits is a float the CHECK refuses.
            hi, lo = sum_parts("sqlite", m.value)
            total = hi * literal_column("4294967296", Integer) + lo
        agg = (
            select(m.type, m[period], m.dimset_id, func.count(), total, func.min(m.value), func.max(m.value))
            .where(and_(True, *cond_m))
            .group_by(m.type, m[period], m.dimset_id)
        )
        await s.execute(insert(table).from_select(["type", period, "dimset_id", "count", "sum", "min", "max"], agg))
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
    s: AsyncSession,
    since: dt.datetime,
    known_types: set[str],
    limit: int = 200,
) -> dict[str, Any]:
    """What went wrong with incoming data since `since`, newest first."""
    q = quality_issues.c
    rows = (await s.execute(select(quality_issues).where(q.at >= since).order_by(q.at.desc(), q.id.desc()))).all()
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
    fresh = (
        await s.execute(
            select(seen_values).where(v.first_seen_at >= since).order_by(v.first_seen_at.desc(), v.dimension, v.value)
        )
    ).all()
    dims = {r.dimension for r in fresh}
    older: dict[str, dict[str, list[str]]] = {}
    if dims:
        for r in await s.execute(select(v.dimension, v.value).where(v.dimension.in_(dims), v.first_seen_at < since)):
            older.setdefault(r.dimension, {}).setdefault(_norm(r.value), []).append(r.value)
    new_values, new_types = [], []
    for r in fresh[:limit]:
        similar = sorted(older.get(r.dimension, {}).get(_norm(r.value), []))
        entry = {
            "dimension": r.dimension,
            "value": r.value,
            "first_seen_at": r.first_seen_at.isoformat(),
            "first_source": r.first_source,
            "similar_to": similar,
        }
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
