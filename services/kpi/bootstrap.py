"""Bootstrap confidence intervals for attribution credit: how sure the figures are.

The unit resampled is the journey (all of one journey's conversions in the range, with the credit
the chosen model gives each group): a resample draws as many journeys as there are, with
replacement, and adds their credit up per group. The interval is the percentile interval of the
resamples' totals (nearest rank at (1 - ci) / 2 and (1 + ci) / 2), widened to hold the point estimate
when it falls outside (it can, with very few journeys or resamples). Money stays integer micro-units
throughout: each resample's total is an exact integer sum.

Reproducible: the draws come from `random.Random(seed)`, so the same journeys, parameters and seed
give the same interval. Pure Python, written for speed: a resample draws its journey indices from
one block of random bytes, and every group's total comes out of one C-level `sum(map(...))` over the
journeys' credits packed into one integer each (a bit field per group), about 4x faster than a sum
per group.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from shared.work import Budget


@dataclass(frozen=True)
class Interval:
    low: int
    high: int


def draws(rnd: random.Random, n: int) -> list[int]:
    """`n` journey indices drawn uniformly with replacement (64-bit draws: the modulo bias is below 1e-13)."""
    return list(_draws(rnd, n))


def _draws(rnd: random.Random, n: int) -> Iterator[int]:
    return map(n.__rmod__, array("Q", rnd.randbytes(8 * n)))


def rank(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank quantile of ascending values."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def pack(per_journey: Sequence[Mapping[str, int]], groups: Sequence[str]) -> tuple[list[int], int]:
    """Each journey's credits as one integer, a `width`-bit field per group: a resample's totals for every
    group are then one sum of integers (exact: a field is wide enough for n times the largest credit)."""
    largest = max((v for j in per_journey for v in j.values()), default=0)
    width = (len(per_journey) * largest).bit_length() + 1
    return [sum(j.get(g, 0) << (width * k) for k, g in enumerate(groups)) for j in per_journey], width


def intervals(
    budget: Budget,
    per_journey: Sequence[Mapping[str, int]],
    groups: Sequence[str],
    *,
    resamples: int,
    ci: float,
    seed: int,
) -> dict[str, Interval]:
    """Each group's bootstrap interval of its total credit over `per_journey` (one credit map per journey,
    credits never negative)."""
    n = len(per_journey)
    points = {g: sum(j.get(g, 0) for j in per_journey) for g in groups}
    if n == 0:
        return {g: Interval(points[g], points[g]) for g in groups}
    if any(v < 0 for j in per_journey for v in j.values()):
        raise ValueError("credits must not be negative")
    packed, width = pack(per_journey, groups)
    mask = (1 << width) - 1
    totals: dict[str, list[int]] = {g: [] for g in groups}
    rnd = random.Random(seed)
    for _ in range(resamples):
        total = sum(map(packed.__getitem__, _draws(rnd, n)))
        for k, g in enumerate(groups):
            totals[g].append((total >> (width * k)) & mask)
        budget.check()  # the size was checked before starting (attribution.compute); the deadline holds
    out = {}
    for g in groups:
        ordered = sorted(totals[g])
        low, high = rank(ordered, (1 - ci) / 2), rank(ordered, (1 + ci) / 2)
        out[g] = Interval(min(low, points[g]), max(high, points[g]))
    return out
