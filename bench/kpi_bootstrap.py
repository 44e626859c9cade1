"""KPI benchmark: the cost of attribution's bootstrap interval (services/kpi/bootstrap.py), and a baseline.

    .venv/bin/python bench/kpi_bootstrap.py                   # the issue's size: 100,000 journeys x 1,000 resamples
    .venv/bin/python bench/kpi_bootstrap.py --quick           # 20,000 journeys, the baseline on 50 resamples
    .venv/bin/python bench/kpi_bootstrap.py --baseline-resamples 1000  # the baseline on every resample

Per run: journeys of 1 to 3 touched channels out of 8 (what attribution.credit_by_group hands over:
one credit map per journey), then
1. `bootstrap.intervals`: the credits as one matrix (journeys x channels) built once, then per block of
   resamples the drawn indices (numpy's PCG64 from the seed), how often each journey was drawn (one
   bincount) and every channel's totals as one matrix product, exact in float64 limbs;
2. the baseline (brute force): the same draws (`bootstrap.draw_blocks`), each resample adding the drawn
   journeys' credit maps up in a Python loop, then the same percentile interval. Its intervals are
   asserted equal to `bootstrap.intervals` over the same number of resamples.
3. every model at once (`bootstrap.intervals_by_model`, what the API computes): the same draws, the
   five models' credits as one wider matrix; against the one-model `bootstrap.intervals` above.
4. the full request path (skip with `--no-api`): a migrated SQLite database holding `--journeys`
   journeys (1 to 3 touchpoints each, one conversion each), the service in-process (ASGI, no gateway),
   `GET /v1/attribution?ci=0.95&resamples=N` timed end to end, then its parts timed alone: loading the
   journeys (`attribution.load`), every model's credits (`attribution.credit_by_group`) and the
   resampling of every model (`bootstrap.intervals_by_model`); the same request without `ci` as the
   baseline (what the interval adds).
Prints wall and CPU seconds per run (CPU: the steadier figure on a loaded machine), per resample and
the ratio; the baseline is timed on `--baseline-resamples` resamples and scaled to the same count.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from pitcrew.migrations import upgrade_async  # noqa: E402
from services.kpi import attribution, bootstrap  # noqa: E402
from services.kpi.main import create_app  # noqa: E402
from services.kpi.models import conversions, touchpoints  # noqa: E402
from services.kpi.settings import Settings  # noqa: E402
from shared.db import Database  # noqa: E402
from shared.identity import HEADER, Principal, mint  # noqa: E402
from shared.settings import DEV_IDENTITY_SECRET  # noqa: E402
from shared.work import Budget  # noqa: E402

CHANNELS = ["search", "social", "display", "email", "events", "video", "affiliate", "partner"]


def journeys(n: int, seed: int = 1) -> list[dict[str, int]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        value = rnd.randint(1, 500_000) * 10_000  # up to 5,000.00 in micro-units
        touched = rnd.sample(CHANNELS, rnd.randint(1, 3))
        share = value // len(touched)
        credit = {c: share for c in touched}
        credit[touched[0]] += value - share * len(touched)
        out.append(credit)
    return out


def brute_force(per_journey, groups, resamples, ci, seed):
    """The obvious loop over the same draws: add every drawn journey's map up, take the percentiles."""
    totals = defaultdict(list)
    for block in bootstrap.draw_blocks(seed, len(per_journey), resamples):
        for drawn in block.tolist():
            acc: dict[str, int] = defaultdict(int)
            for i in drawn:
                for g, v in per_journey[i].items():
                    acc[g] += v
            for g in groups:
                totals[g].append(acc[g])
    out = {}
    for g in groups:
        ordered = sorted(totals[g])
        point = sum(j.get(g, 0) for j in per_journey)
        low, high = bootstrap.rank(ordered, (1 - ci) / 2), bootstrap.rank(ordered, (1 + ci) / 2)
        out[g] = bootstrap.Interval(min(low, point), max(high, point))
    return out


T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


async def fill(url: str, n: int) -> int:
    """`n` journeys over 2027: 1 to 3 touchpoints each (channel, sometimes a campaign), then a conversion."""
    await upgrade_async("kpi", url)
    db = Database(url)
    rnd = random.Random(3)
    now = dt.datetime.now(dt.UTC)
    tps, convs = [], []
    for j in range(n):
        start = T0 + dt.timedelta(seconds=rnd.randrange(360 * 86400))
        for k in range(rnd.randint(1, 3)):
            channel = rnd.choice(CHANNELS)
            tps.append(
                {
                    "id": f"t{j}-{k}",
                    "journey_id": f"j{j}",
                    "time": start + dt.timedelta(hours=k),
                    "channel": channel,
                    "campaign": f"{channel}-{rnd.randint(1, 4)}" if rnd.random() < 0.5 else None,
                    "created_at": now,
                }
            )
        convs.append(
            {
                "id": f"c{j}",
                "journey_id": f"j{j}",
                "time": start + dt.timedelta(hours=4),
                "value": rnd.randint(1, 500_000) * 10_000,
                "dimensions": {},
                "created_at": now,
            }
        )
    try:
        async with db.transaction() as s:
            for i in range(0, len(tps), 20_000):
                await s.execute(sa.insert(touchpoints), tps[i : i + 20_000])
            for i in range(0, len(convs), 20_000):
                await s.execute(sa.insert(conversions), convs[i : i + 20_000])
            await s.execute(sa.text("ANALYZE"))
    finally:
        await db.dispose()
    return len(tps)


def clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


async def api_path(n: int, resamples: int) -> None:
    """The request end to end, then its parts alone, on a SQLite database of `n` journeys."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/kpi.db"
        t = clocks()
        n_tp = await fill(url, n)
        print(f"\nthe API request path, SQLite, {n:,} journeys ({n_tp:,} touchpoints), filled in {since(t)[0]:.1f} s:")
        settings = Settings(
            database_url=url,
            nats_enabled=False,
            target_check_seconds=0,
            log_level="WARNING",
            attribution_seconds=600,
        )
        app = create_app(settings)
        headers = {HEADER: mint(Principal("bench", frozenset({"analyst"})), DEV_IDENTITY_SECRET, 3600)}
        params = {"from": "2027-01-01", "to": "2027-12-31", "model": "linear"}
        boot = {**params, "ci": 0.95, "resamples": resamples, "seed": 7}
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://kpi", headers=headers, timeout=600
            ) as client,
        ):
            for name, q in (("without ci (baseline)", params), (f"ci=0.95 resamples={resamples:,}", boot)):
                for run in (1, 2):
                    t = clocks()
                    r = await client.get("/v1/attribution", params=q)
                    wall, cpu = since(t)
                    assert r.status_code == 200, r.text
                    assert r.json()["conversions"] == n
                    print(f"  GET /v1/attribution {name:<28} run {run}: {wall:6.2f} s wall, {cpu:6.2f} s CPU")
            limits = attribution.Limits(seconds=600)
            async with app.state.runtime.unit_of_work(readonly=True) as uow:
                t = clocks()
                found = await attribution.load(
                    uow, None, start=dt.date(2027, 1, 1), end=dt.date(2027, 12, 31), lookback_days=90, limits=limits
                )
                w, c = since(t)
            print(f"    parts: load journeys (attribution.load)          {w:6.2f} s wall, {c:6.2f} s CPU")
            budget = Budget(600, max_steps=10**9)
            t = clocks()
            credits = attribution.credit_by_group(budget, found, 7.0, 90, "channel", "linear")
            w, c = since(t)
            print(f"           every model's credits (credit_by_group)  {w:6.2f} s wall, {c:6.2f} s CPU")
            groups = sorted({g for m in attribution.MODELS for g in credits.by_model[m]})
            t = clocks()
            bootstrap.intervals_by_model(
                budget, credits.per_journey_by_model, groups, resamples=resamples, ci=0.95, seed=7
            )
            w, c = since(t)
            print(f"           resampling, every model (intervals_by_model) {w:6.2f} s wall, {c:6.2f} s CPU")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--journeys", type=int, default=100_000)
    ap.add_argument("--resamples", type=int, default=1_000)
    ap.add_argument("--baseline-resamples", type=int, default=100, help="the baseline's resamples (scaled)")
    ap.add_argument("--quick", action="store_true", help="20,000 journeys, the baseline on 50 resamples")
    ap.add_argument("--no-api", action="store_true", help="skip the full request path")
    args = ap.parse_args()
    if args.quick:
        args.journeys, args.baseline_resamples = 20_000, 50
    data = journeys(args.journeys)
    groups = sorted(CHANNELS)
    t0, c0 = time.perf_counter(), time.process_time()
    fast = bootstrap.intervals(Budget(3600), data, groups, resamples=args.resamples, ci=0.95, seed=7)
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0
    base_n = min(args.baseline_resamples, args.resamples)
    t0, c0 = time.perf_counter(), time.process_time()
    slow = brute_force(data, groups, base_n, 0.95, 7)
    scale = args.resamples / base_n
    t_slow, c_slow = (time.perf_counter() - t0) * scale, (time.process_time() - c0) * scale
    same = (
        fast
        if base_n == args.resamples
        else bootstrap.intervals(Budget(3600), data, groups, resamples=base_n, ci=0.95, seed=7)
    )
    assert slow == same, "the baseline and bootstrap.intervals disagree"
    print(f"bootstrap, {args.journeys:,} journeys x {len(groups)} channels, {args.resamples:,} resamples:")
    per = t_fast / args.resamples * 1000
    print(f"  bootstrap.intervals  {t_fast:8.2f} s wall, {c_fast:6.2f} s CPU  ({per:.2f} ms per resample)")
    scaled = "" if base_n == args.resamples else f" (timed on {base_n:,} resamples, scaled)"
    print(f"  brute-force baseline {t_slow:8.2f} s wall, {c_slow:6.2f} s CPU{scaled}")
    print(f"  speed-up             {t_slow / t_fast:8.1f}x wall, {c_slow / c_fast:.1f}x CPU")
    # Every model at once: five credit maps per journey (here: the same journeys' credit, shifted per model).
    models = {
        m: [dict(zip(groups, (row.get(g, 0) for g in groups[k:] + groups[:k]), strict=True)) for row in data]
        for k, m in enumerate(attribution.MODELS)
    }
    t0, c0 = time.perf_counter(), time.process_time()
    every = bootstrap.intervals_by_model(Budget(3600), models, groups, resamples=args.resamples, ci=0.95, seed=7)
    t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
    assert len(every) == len(attribution.MODELS)
    print(
        f"  intervals_by_model   {t_all:8.2f} s wall, {c_all:6.2f} s CPU  ({len(attribution.MODELS)} models, one pass;"
        f" {t_all / t_fast:.2f}x the one-model time)"
    )
    if not args.no_api:
        asyncio.run(api_path(args.journeys, args.resamples))


if __name__ == "__main__":
    main()
