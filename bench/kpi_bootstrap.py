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
Prints wall and CPU seconds per run (CPU: the steadier figure on a loaded machine), per resample and
the ratio; the baseline is timed on `--baseline-resamples` resamples and scaled to the same count.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.kpi import bootstrap  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--journeys", type=int, default=100_000)
    ap.add_argument("--resamples", type=int, default=1_000)
    ap.add_argument("--baseline-resamples", type=int, default=100, help="the baseline's resamples (scaled)")
    ap.add_argument("--quick", action="store_true", help="20,000 journeys, the baseline on 50 resamples")
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


if __name__ == "__main__":
    main()
