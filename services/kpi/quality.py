"""Data quality: rejected items, duplicates dropped, late arrivals, and values seen for the first time.

Ingest records them in the batch's own transaction (`record_batch`, `first_sightings`); GET
/v1/quality reads them back (`report`), with each new spelling of a dimension value next to the
older values it differs from only in case and punctuation ("Paid-Social" beside "paid social").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, tuple_

from services.kpi.models import quality_issues, seen_values
from services.kpi.raw import EXTERNAL_ID, INDEX, SOURCE, TIME, TYPE, Row, chunks
from services.kpi.rollups import Combos
from shared.db import insert_ignore
from shared.uow import UnitOfWork

SAMPLE = 20  # rows shown per duplicate or late batch
MAX_REJECTED_KEPT = 1000  # rejected items kept per batch


def _rejected(now: dt.datetime, rejected: list[dict[str, Any]]) -> dict[str, Any]:
    items = rejected[:MAX_REJECTED_KEPT]
    return {"kind": "rejected", "at": now, "source": None, "count": len(rejected), "detail": {"items": items}}


def _duplicates(now: dt.datetime, dups: list[Row]) -> dict[str, Any]:
    sample = [{"index": r[INDEX], "source": r[SOURCE], "external_id": r[EXTERNAL_ID]} for r in dups[:SAMPLE]]
    return {"kind": "duplicate", "at": now, "source": dups[0][SOURCE], "count": len(dups), "detail": {"sample": sample}}


def _late(now: dt.datetime, late: list[Row]) -> dict[str, Any]:
    worst = now - min(r[TIME] for r in late)
    sample = [
        {"index": r[INDEX], "type": r[TYPE], "time": r[TIME].isoformat(), "external_id": r[EXTERNAL_ID]}
        for r in late[:SAMPLE]
    ]
    return {
        "kind": "late",
        "at": now,
        "source": late[0][SOURCE],
        "count": len(late),
        "detail": {"max_lateness_hours": round(worst.total_seconds() / 3600, 1), "sample": sample},
    }


async def record_batch(
    uow: UnitOfWork,
    *,
    now: dt.datetime,
    fresh: list[Row],
    dups: list[Row],
    rejected: list[dict[str, Any]],
    late_after: dt.timedelta,
) -> None:
    """One quality record per kind the batch had: its rejections, its duplicates, its late arrivals."""
    records: list[dict[str, Any]] = []
    if rejected:
        records.append(_rejected(now, rejected))
    if dups:
        records.append(_duplicates(now, dups))
    cutoff = now - late_after
    late = [r for r in fresh if r[TIME] < cutoff]
    if late:
        records.append(_late(now, late))
    if records:
        await uow.execute(insert(quality_issues), records)


async def first_sightings(
    uow: UnitOfWork, combos: Combos, now: dt.datetime, seen: set[tuple[str, str]], new: set[tuple[str, str]]
) -> None:
    """Record the type and dimension values not seen before (the batch's combos, in item order).

    `seen` holds the (dimension, value) pairs known committed; what this batch looked at goes to `new`.
    """
    values: dict[tuple[str, str], str] = {}
    for (mtype, _), (source, pairs) in combos.items():
        for pair in (("type", mtype), *pairs):
            if pair not in seen and pair not in values:
                values[pair] = source
    if not values:
        return
    v = seen_values.c
    known: set[tuple[str, str]] = set()
    for chunk in chunks(list(values), 400):
        cond = tuple_(v.dimension, v.value).in_(chunk)
        known.update((r.dimension, r.value) for r in await uow.execute(select(v.dimension, v.value).where(cond)))
    unseen = [k for k in values if k not in known]
    if unseen:
        await uow.execute(
            insert_ignore(uow.dialect, seen_values, ["dimension", "value"]),
            [{"dimension": a, "value": b, "first_seen_at": now, "first_source": values[(a, b)]} for a, b in unseen],
        )
    new.update(values)


def _norm(value: str) -> str:
    return "".join(ch for ch in value.lower() if ch.isalnum())


async def _issues(uow: UnitOfWork, since: dt.datetime, limit: int) -> dict[str, Any]:
    """The rejected, duplicate and late records since `since`: totals, and the newest `limit` of each."""
    q = quality_issues.c
    query = select(quality_issues).where(q.at >= since).order_by(q.at.desc(), q.id.desc())
    rows = (await uow.execute(query)).mappings().all()
    rejected: list[dict[str, Any]] = []
    totals = {"rejected": 0, "duplicate": 0, "late": 0}
    batches: dict[str, list[dict[str, Any]]] = {"duplicate": [], "late": []}
    for r in rows:
        kind, at, count, detail = r["kind"], r["at"].isoformat(), r["count"], r["detail"]
        totals[kind] += count
        if kind == "rejected":
            for item in detail.get("items", []):
                if len(rejected) < limit:
                    rejected.append({"at": at, **item})
        elif len(batches[kind]) < limit:
            batches[kind].append({"at": at, "source": r["source"], "count": count, **detail})
    return {
        "rejected": {"count": totals["rejected"], "items": rejected},
        "duplicates_dropped": {"count": totals["duplicate"], "batches": batches["duplicate"]},
        "late_arrivals": {"count": totals["late"], "batches": batches["late"]},
    }


async def _first_seen(
    uow: UnitOfWork, since: dt.datetime, known_types: set[str], limit: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(new measurement types, new dimension values) since `since`, each with its similar older spellings."""
    v = seen_values.c
    fresh = (
        await uow.execute(
            select(seen_values).where(v.first_seen_at >= since).order_by(v.first_seen_at.desc(), v.dimension, v.value)
        )
    ).all()
    dims = {r.dimension for r in fresh}
    older: dict[str, dict[str, list[str]]] = {}
    if dims:
        for r in await uow.execute(select(v.dimension, v.value).where(v.dimension.in_(dims), v.first_seen_at < since)):
            older.setdefault(r.dimension, {}).setdefault(_norm(r.value), []).append(r.value)
    new_values, new_types = [], []
    for r in fresh[:limit]:
        entry: dict[str, Any] = {
            "dimension": r.dimension,
            "value": r.value,
            "first_seen_at": r.first_seen_at.isoformat(),
            "first_source": r.first_source,
            "similar_to": sorted(older.get(r.dimension, {}).get(_norm(r.value), [])),
        }
        if r.dimension == "type":
            entry["used_by_metric"] = r.value in known_types
            new_types.append(entry)
        else:
            new_values.append(entry)
    return new_types, new_values


async def report(uow: UnitOfWork, *, since: dt.datetime, known_types: set[str], limit: int = 200) -> dict[str, Any]:
    """What went wrong with incoming data since `since`, newest first."""
    issues = await _issues(uow, since, limit)
    new_types, new_values = await _first_seen(uow, since, known_types, limit)
    return {
        "since": since.isoformat(),
        **issues,
        "new_measurement_types": new_types,
        "new_dimension_values": new_values,
    }
