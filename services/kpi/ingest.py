"""Measurement ingest: validation, idempotency by (source, external_id), raw rows, rollups, quality.

One batch is one transaction: the raw rows, their rollup deltas, the new dimension sets, first
sightings and quality records commit together, so the rollups always equal the aggregation of
the raw rows (`rollups.rebuild_rollups` proves it by recomputing them). Items are judged one by
one: a bad item is reported in `rejected` with its index and a reason naming the field, the
others are accepted. The API, the CSV import and consumed events all write through here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from services.kpi import quality, rollups
from services.kpi.formula import KEY_RE
from services.kpi.models import dimension_sets
from services.kpi.raw import (
    DIMS,
    HASH,
    VALUES_ROWS,
    Row,
    SqliteInserts,
    chunks,
    first_occurrences,
    index_of,
    insert_raw,
    raw_params,
    values_sql,
)
from services.kpi.values import (
    EPOCH_ORDINAL,
    canonical_dims,
    dims_hash,
    fast_micro,
    iso_time_text,
    parse_time,
    time_text,
    to_micro,
)
from shared.bounds import MAX_DATE, MIN_DATE
from shared.csvtext import read_csv
from shared.db import Database, insert_ignore, utcnow
from shared.errors import Invalid
from shared.identity import Principal
from shared.sqlite_driver import driver_of
from shared.uow import UnitOfWork

MAX_BATCH = 10_000
ITEM_FIELDS = frozenset({"type", "value", "time", "dimensions", "source", "external_id"})
CSV_FIELDS = {"type", "value", "time", "source", "external_id"}
_UTC = dt.UTC
_fromisoformat = dt.datetime.fromisoformat
Dims = tuple[dict[str, str], str, tuple[tuple[str, str], ...]]  # canonical dict, hash, pairs


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class Ingestor:
    """Writes measurement batches; keeps per-database caches of committed lookups."""

    def __init__(self, *, late_after: dt.timedelta = dt.timedelta(hours=48)):
        self.late_after = late_after
        self.dimset_ids: dict[str, int] = {}
        self.seen: set[tuple[str, str]] = set()
        self._types: set[str] = set()
        self._dims_cache: dict[tuple[tuple[Any, Any], ...], Dims] = {}
        self._no_dims: Dims = ({}, dims_hash({}), ())
        self._value_cache: dict[str, int] = {}  # decimal string -> micro-units, for repeated values

    def _dims(self, raw: Any) -> Dims:
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

    def _after_commit(self, uow: UnitOfWork, dimsets: dict[str, int], seen: set[tuple[str, str]]) -> None:
        # Cache only what committed: a rolled-back dimension set must not be remembered.
        def remember(_s: Any) -> None:
            self.dimset_ids.update(dimsets)
            self.seen.update(seen)

        event.listen(uow.session.sync_session, "after_commit", remember, once=True)

    def validate(
        self, items: Sequence[Any], principal: Principal | None, default_source: str, start: int = 0
    ) -> tuple[list[Row], list[dict[str, Any]]]:
        """Judge every item: the valid ones as rows, the others as {index, reason} in `rejected`.

        The loop takes the common, valid shape in plain Python (no Decimal, no per-item models,
        cached dimension sets and values) and accepts only what `_row` accepts, with the same
        result; anything unusual goes to `_row`, which checks in order and gives the reason (a
        ValueError from the loop itself, bad dimensions, is the first error `_row` finds too).
        """
        rows: list[Row] = []
        rejected: list[dict[str, Any]] = []
        append, types, dims_of, values, slow = rows.append, self._types, self._dims, self._value_cache, self._row
        scoped = principal if principal is not None and principal.scopes else None
        for i, item in enumerate(items, start):
            try:
                if type(item) is not dict or not item.keys() <= ITEM_FIELDS:
                    append(slow(i, item, principal, default_source))
                    continue
                mtype, v, t = item.get("type"), item.get("value"), item.get("time")
                value = values.get(v) if type(v) is str else None
                if value is None:
                    value = fast_micro(v)
                    if value is not None and type(v) is str and len(values) < 100_000:
                        values[v] = value
                if value is None or type(t) is not str or type(mtype) is not str or mtype not in types:
                    append(slow(i, item, principal, default_source))
                    continue
                try:
                    text = iso_time_text(t)
                    t = _fromisoformat(t)
                except (ValueError, IndexError):  # IndexError: "" (iso_time_text looks at its last character)
                    append(slow(i, item, principal, default_source))
                    continue
                tz = t.tzinfo
                if tz is None or not MIN_DATE <= t.date() <= MAX_DATE:  # the bounds: see values.parse_time
                    append(slow(i, item, principal, default_source))
                    continue
                if tz is not _UTC:
                    t = t.astimezone(_UTC)
                dims, dhash, pairs = dims_of(item.get("dimensions"))
                source, ext = item.get("source") or default_source, item.get("external_id")
                if (
                    type(source) is not str
                    or not 0 < len(source) <= 100
                    or (ext is not None and (type(ext) is not str or not 0 < len(ext) <= 200))
                    or (scoped is not None and not scoped.may_see(dims))
                ):
                    append(slow(i, item, principal, default_source))
                    continue
                day, month = t.toordinal() - EPOCH_ORDINAL, t.year * 12 + t.month - 1
                append((i, mtype, value, t, pairs, dhash, source, ext, day, month, text or time_text(t)))
            except ValueError as exc:
                rejected.append({"index": i, "reason": str(exc)})
        return rows, rejected

    def _row(self, i: int, item: Any, principal: Principal | None, default_source: str) -> Row:
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
        self, db: Database, who: Principal | None, *, items: Sequence[Any], default_source: str
    ) -> IngestResult:
        """Validate and write one batch in its own transaction (retried on a racing duplicate)."""
        if len(items) > MAX_BATCH:
            raise Invalid.on("items", f"at most {MAX_BATCH:,} measurements per batch (got {len(items):,})")
        if db.is_sqlite and len(items) > VALUES_ROWS:
            async with db.transaction() as s:
                return await self._validate_and_write(UnitOfWork(s), who, items, default_source)
        rows, rejected = self.validate(items, who, default_source)
        for attempt in range(3):
            try:
                async with db.transaction() as s:
                    return await self.write(UnitOfWork(s), rows, rejected)
            except IntegrityError:
                # A concurrent batch committed one of our external ids first; the re-run sees it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def write(self, uow: UnitOfWork, rows: list[Row], rejected: list[dict[str, Any]]) -> IngestResult:
        """Write validated rows in the caller's unit of work (event handlers and idempotent requests)."""
        now = utcnow()
        candidates, dups = first_occurrences(rows)
        new_dimsets: dict[str, int] = {}
        ids: dict[str, int] = {}
        fresh: list[Row] = []
        if candidates:
            await self._dimset_ids(uow, candidates, new_dimsets, ids)
            fresh, stored = await insert_raw(uow, candidates, ids, now)
            if stored:
                dups = sorted(dups + stored, key=index_of) if dups else stored
        return await self._finish(uow, now, fresh, dups, list(rejected), ids, new_dimsets)

    async def _validate_and_write(
        self, uow: UnitOfWork, who: Principal | None, items: Sequence[Any], default_source: str
    ) -> IngestResult:
        """SQLite: `validate` + `write` of one batch, validating each chunk while the previous one is inserted.

        Each chunk's multi-row INSERT runs in the driver's thread (SQLite works without the GIL)
        while this thread validates the next chunk, so the Python and SQLite halves of the work
        overlap instead of adding up. The answer is the same as `write` gives: chunks are inserted
        in item order, so the first occurrence of an external id wins, and a chunk whose row count
        falls short has its inserted keys read back by id range. The transaction (BEGIN IMMEDIATE)
        is held from the first chunk on.
        """
        now = utcnow()
        driver = await driver_of(await uow.connection())
        received = time_text(now)
        rejected: list[dict[str, Any]] = []
        fresh: list[Row] = []
        dups: list[Row] = []
        ids: dict[str, int] = {}
        new_dimsets: dict[str, int] = {}
        pending: Any = None
        pending_rows: list[Row] = []
        inserts = SqliteInserts(driver)
        for lo in range(0, len(items), VALUES_ROWS):
            rows, bad = self.validate(items[lo : lo + VALUES_ROWS], who, default_source, lo)
            rejected.extend(bad)
            if pending is not None:
                new, stored = await inserts.settle(await pending, pending_rows)
                fresh.extend(new)
                dups.extend(stored)
                pending = None
            if rows:
                await self._dimset_ids(uow, rows, new_dimsets, ids)
                pending = asyncio.ensure_future(driver.execute(values_sql(len(rows)), raw_params(rows, ids, received)))
                pending_rows = rows
                await asyncio.sleep(0)  # let the task hand the statement to the driver's thread
        if pending is not None:
            new, stored = await inserts.settle(await pending, pending_rows)
            fresh.extend(new)
            dups.extend(stored)
        inserts.check()
        return await self._finish(uow, now, fresh, dups, rejected, ids, new_dimsets)

    async def _finish(
        self,
        uow: UnitOfWork,
        now: dt.datetime,
        fresh: list[Row],
        dups: list[Row],
        rejected: list[dict[str, Any]],
        ids: dict[str, int],
        new_dimsets: dict[str, int],
    ) -> IngestResult:
        """After the raw rows: rollups, first sightings and quality records of the batch; the answer."""
        new_seen: set[tuple[str, str]] = set()
        if fresh:
            daily, monthly, combos = rollups.aggregate(fresh, ids)
            await rollups.add_deltas(uow, daily, monthly)
            await quality.first_sightings(uow, combos, now, self.seen, new_seen)
        await quality.record_batch(uow, now=now, fresh=fresh, dups=dups, rejected=rejected, late_after=self.late_after)
        self._after_commit(uow, new_dimsets, new_seen)
        return IngestResult(accepted=len(fresh), duplicates=len(dups), rejected=rejected)

    async def _dimset_ids(self, uow: UnitOfWork, rows: list[Row], new: dict[str, int], ids: dict[str, int]) -> None:
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
            await uow.execute(
                insert_ignore(uow.dialect, dimension_sets, ["hash"]),
                [{"hash": h, "dims": dims} for h, dims in missing.items()],
            )
            for chunk in chunks(list(missing), 900):
                for r in await uow.execute(select(d.hash, d.id).where(d.hash.in_(chunk))):
                    ids[r.hash] = new[r.hash] = r.id


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
