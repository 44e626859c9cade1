"""KPI benchmark: cohort conversions (services/kpi/cohorts.py, funnel.py) over many leads, and brute-force baselines.

    .venv/bin/python bench/kpi_cohort.py             # 1,000,000 leads (the issue's size)
    .venv/bin/python bench/kpi_cohort.py --quick     # 100,000 leads

Data (SQLite, a fresh migrated file): N leads over 2027, 60 % of them reaching MQL 0 to 60 days later and
a third of those SQL 0 to 45 days after that, each fact with a channel; a lead's facts are bulk-inserted
as the lifecycle table's rows. Timed, in one run, each against its baseline run right after it:
1. the cohort of every lead: `cohorts.cohort` as `/v1/cohorts` calls it, lead in 2027 -> MQL within 30 days
   by channel (all N leads enter: one LEFT JOIN query, then the summary in a worker thread);
2. the conversion metric's series (`compute.compute` of a conversion metric, as `/v1/metrics/{key}/series`
   calls it): lead -> MQL within 30 days, month x channel over 2027 (N leads in 96 cohorts);
3. MQL in 2027-Q1 -> SQL within 30 days by channel (`cohorts.cohort`).
Baselines (brute force): every fact of the two stages read with plain SELECTs, joined in Python dicts,
counted and sorted per channel (and month); their answers are asserted equal to the code's.
Prints wall and CPU seconds (CPU: the steadier figure on a loaded machine) and the ratio baseline / code.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select  # noqa: E402

from pitcrew.migrations import upgrade_async  # noqa: E402
from services.kpi import cohorts, compute, definitions  # noqa: E402
from services.kpi.definitions import Definition  # noqa: E402
from services.kpi.models import lifecycle_facts  # noqa: E402
from services.kpi.periods import window  # noqa: E402
from services.kpi.raw import tune_sqlite  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.uow import UnitOfWork  # noqa: E402

CHANNELS = ["search", "social", "display", "email", "events", "video", "affiliate", "partner"]
T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def facts(n: int) -> list[dict]:
    rnd = random.Random(1)
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i in range(n):
        dims = {"channel": rnd.choice(CHANNELS)}
        lead = T0 + dt.timedelta(seconds=rnd.randrange(365 * 86400))
        rows.append({"entity_id": f"L{i}", "stage": "lead", "time": lead, "dimensions": dims})
        if rnd.random() < 0.6:
            mql = lead + dt.timedelta(seconds=rnd.randrange(60 * 86400))
            rows.append({"entity_id": f"L{i}", "stage": "mql", "time": mql, "dimensions": dims})
            if rnd.random() < 1 / 3:
                sql = mql + dt.timedelta(seconds=rnd.randrange(45 * 86400))
                rows.append({"entity_id": f"L{i}", "stage": "sql", "time": sql, "dimensions": dims})
    for r in rows:
        r.update(source="bench", received_at=now)
    return rows


async def brute_force(
    db: Database,
    first: dt.datetime,
    last: dt.datetime,
    window_days: int,
    a: str = "mql",
    b: str = "sql",
    by_month: bool = False,
) -> list[dict]:
    """Every A and B fact read, joined in Python; per channel (and month of A): entered, converted, median."""
    f = lifecycle_facts.c
    async with db.transaction(readonly=True) as s:
        starts = (await s.execute(select(f.entity_id, f.time, f.dimensions).where(f.stage == a))).all()
        reached_at = dict((await s.execute(select(f.entity_id, f.time).where(f.stage == b))).all())
    entered: dict[tuple, int] = defaultdict(int)
    took: dict[tuple, list[float]] = defaultdict(list)
    for entity, t, dims in starts:
        if not first <= t < last:
            continue
        key = (dims["channel"], t.month if by_month else 0)
        entered[key] += 1
        reached = reached_at.get(entity)
        if reached is not None and 0 <= (reached - t).total_seconds() <= window_days * 86400:
            took[key].append((reached - t).total_seconds())
    out = []
    for key in sorted(entered):
        spans = sorted(took[key])
        median = spans[math.ceil(0.5 * len(spans)) - 1] if spans else None
        out.append(
            {"channel": key[0], "month": key[1], "entered": entered[key], "converted": len(spans), "median": median}
        )
    return out


def _timed_line(label: str, t: float, c: float, base_t: float, base_c: float) -> None:
    print(f"    {label:<44} {t:7.2f} s wall, {c:6.2f} s CPU")
    print(f"    {'brute-force baseline (SELECTs, Python join)':<44} {base_t:7.2f} s wall, {base_c:6.2f} s CPU")
    print(f"    {'ratio baseline / code':<44} {base_t / t:7.1f}x wall, {base_c / c:5.1f}x CPU")


async def _clocked(coro):
    t0, c0 = time.perf_counter(), time.process_time()
    out = await coro
    return out, time.perf_counter() - t0, time.process_time() - c0


async def run(n: int, path: Path) -> None:
    url = f"sqlite:///{path}"
    await upgrade_async("kpi", url)
    db = Database(url)
    tune_sqlite(db)
    try:
        rows = facts(n)
        t0 = time.perf_counter()
        for lo in range(0, len(rows), 50_000):
            async with db.transaction() as s:
                await s.execute(insert(lifecycle_facts), rows[lo : lo + 50_000])
        print(f"  {n:,} leads, {len(rows):,} lifecycle facts inserted in {time.perf_counter() - t0:.1f} s")

        def uow_factory(readonly: bool = False):
            return _uow(db, readonly)

        limits = cohorts.CohortLimits(max_entities=10_000_000, seconds=3600)
        year = (T0, dt.datetime(2028, 1, 1, tzinfo=dt.UTC))

        # 1. every lead's cohort, by channel
        args = dict(group_by=["channel"], fiscal_start=1, limits=limits)
        answer, t, c = await _clocked(
            cohorts.cohort(uow_factory, None, from_stage="lead", to_stage="mql", period="2027", window_days=30, **args)
        )
        base, bt, bc = await _clocked(brute_force(db, *year, 30, "lead", "mql"))
        _check(answer["items"], base)
        entered = sum(i["entered"] for i in answer["items"])
        print(f"  1. cohort lead 2027 -> MQL in 30 days by channel: {entered:,} entered")
        _timed_line("cohorts.cohort (counts in SQL, tally off the loop)", t, c, bt, bc)

        # 2. the conversion metric's series, month x channel
        metric = _conversion_metric("lead", "mql", 30)
        plan = compute.Plan(metric, {metric.key: metric})
        w = window(dt.date(2027, 1, 1), dt.date(2027, 12, 31), "month")

        async def series():
            async with uow_factory(readonly=True) as uow:
                return await compute.compute(
                    uow, None, plan=plan, w=w, group_by=["channel"], flt={}, cohort_limits=limits
                )

        (grid, _), t, c = await _clocked(series())
        base, bt, bc = await _clocked(brute_force(db, *year, 30, "lead", "mql", by_month=True))
        got = [
            {
                "channel": g[0],
                "month": i + 1,
                "entered": grid.details[(g, i)]["entered"],
                "converted": grid.details[(g, i)]["converted"],
                "median": grid.details[(g, i)]["median_days"],
            }
            for g in grid.groups
            for i in range(12)
            if grid.details[(g, i)]["entered"]
        ]
        assert got == [{**b, "median": cohorts._days(b["median"])} for b in base], (got[:2], base[:2])
        print(f"  2. conversion metric lead -> MQL in 30 days, month x channel over 2027: {len(got)} cohorts")
        _timed_line("compute.compute (funnel.py, as cohorts.cohort)", t, c, bt, bc)

        # 3. MQL in 2027-Q1 -> SQL
        first, last = T0, dt.datetime(2027, 4, 1, tzinfo=dt.UTC)
        answer, t, c = await _clocked(
            cohorts.cohort(
                uow_factory, None, from_stage="mql", to_stage="sql", period="2027-Q1", window_days=30, **args
            )
        )
        base, bt, bc = await _clocked(brute_force(db, first, last, 30))
        _check(answer["items"], base)
        entered = sum(i["entered"] for i in answer["items"])
        print(f"  3. cohort MQL 2027-Q1 -> SQL in 30 days by channel: {entered:,} entered")
        _timed_line("cohorts.cohort (counts in SQL, tally off the loop)", t, c, bt, bc)
    finally:
        await db.dispose()


def _check(items: list[dict], base: list[dict]) -> None:
    got = [
        {
            "channel": i["group"]["channel"],
            "entered": i["entered"],
            "converted": i["converted"],
            "median": i["median_days"],
        }
        for i in items
    ]
    want = [
        {
            "channel": b["channel"],
            "entered": b["entered"],
            "converted": b["converted"],
            "median": cohorts._days(b["median"]),
        }
        for b in base
    ]
    assert got == want, (got[:2], want[:2])


def _conversion_metric(a: str, b: str, days: int) -> Definition:
    spec = {"key": "bench_conversion", "name": "Bench", "kind": "conversion", "from_stage": a, "to_stage": b}
    spec |= {"window_days": days, "unit": "percent", "direction": "higher_is_better"}
    row = definitions._row(definitions.check_spec(spec), 1, "bench", dt.datetime.now(dt.UTC))
    return Definition(**row)


class _uow:
    def __init__(self, db: Database, readonly: bool):
        self.cm = db.transaction(readonly=readonly)

    async def __aenter__(self) -> UnitOfWork:
        return UnitOfWork(await self.cm.__aenter__())

    async def __aexit__(self, *exc: object) -> None:
        await self.cm.__aexit__(*exc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 leads")
    args = ap.parse_args()
    if args.quick:
        args.leads = 100_000
    tmp = Path(tempfile.mkdtemp(prefix="pitcrew-bench-cohort-"))
    print(f"KPI cohort benchmark, SQLite file in {tmp}")
    asyncio.run(run(args.leads, tmp / "kpi.db"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp / "kpi.db") + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
