"""Bootstrap confidence intervals for attribution credit: how sure the figures are.

The unit resampled is the journey (all of one journey's conversions in the range, with the credit
the chosen model gives each group): a resample draws as many journeys as there are, with
replacement, and adds their credit up per group. The interval is the percentile interval of the
resamples' totals (nearest rank at (1 - ci) / 2 and (1 + ci) / 2), widened to hold the point estimate
when it falls outside (it can, with very few journeys or resamples). Money stays integer micro-units
throughout: each resample's total is an exact integer sum.

Reproducible: the draws come from `numpy.random.Generator(PCG64(seed))` in fixed blocks
(`draw_blocks`), so the same journeys, parameters and seed give the same interval.

In arrays (numpy): the journeys' credits are one matrix (journeys x groups), computed once; a block of
resamples draws its journey indices at once, counts how often each journey was drawn (one
`bincount`), and every group's totals of the block are one matrix product counts x credits. The
product runs in float64 (BLAS) and is exact: the credits are cut into limbs of `k` bits with
n x 2^k < 2^53, so every partial sum is an integer below 2^53; the limbs' totals are joined again as
integers. 1,000 resamples of 100,000 journeys take a few seconds instead of the 38 s of CPU of the
pure-Python version (docs/kpi.md#benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.work import Budget

# Indices drawn per block (resamples x journeys): 2,000,000 int64 draws, 16 MB, a few such arrays at once.
BLOCK_DRAWS = 2_000_000
EXACT_BITS = 53  # float64 holds every integer below 2^53


@dataclass(frozen=True)
class Interval:
    low: int
    high: int


def block_size(n: int) -> int:
    """Resamples per block for `n` journeys (at least one)."""
    return max(1, BLOCK_DRAWS // max(1, n))


def draw_blocks(seed: int, n: int, resamples: int) -> Iterator[npt.NDArray[np.int64]]:
    """The journey indices of every resample, a block (resamples x `n`) at a time, uniform with replacement.

    The blocks' sizes depend only on `n`, so a seed gives the same draws to whoever reads them
    (the brute-force baseline of bench/kpi_bootstrap.py and the property tests)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    size = block_size(n)
    for start in range(0, resamples, size):
        yield rng.integers(0, n, size=(min(size, resamples - start), n), dtype=np.int64)


def rank(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank quantile of ascending values."""
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def limbs(per_journey: Sequence[Mapping[str, int]], groups: Sequence[str]) -> tuple[list[npt.NDArray[np.float64]], int]:
    """The credits (journeys x groups) cut into float64 matrices of `bits`-bit limbs, lowest first, such that
    a sum of n of them with whole-number weights adding up to n stays below 2^53 (exact in float64)."""
    n = len(per_journey)
    bits = max(1, EXACT_BITS - 1 - n.bit_length())  # n < 2^bit_length, so n x (2^bits - 1) < 2^52
    largest = max((v for j in per_journey for v in j.values()), default=0)
    count = max(1, math.ceil(largest.bit_length() / bits))
    column = {g: k for k, g in enumerate(groups)}
    if largest < 2**63:
        whole = np.zeros((n, len(groups)), dtype=np.int64)
        for i, j in enumerate(per_journey):
            for g, v in j.items():
                whole[i, column[g]] = v
        mask = np.int64((1 << bits) - 1)
        return [((whole >> np.int64(bits * part)) & mask).astype(np.float64) for part in range(count)], bits
    out = [np.zeros((n, len(groups)), dtype=np.float64) for _ in range(count)]
    low = (1 << bits) - 1
    for i, j in enumerate(per_journey):
        for g, v in j.items():
            for part in range(count):
                out[part][i, column[g]] = float((v >> (bits * part)) & low)
    return out, bits


def block_totals(idx: npt.NDArray[np.int64], parts: Sequence[npt.NDArray[np.float64]], bits: int) -> list[list[int]]:
    """Each resample's total per group (exact integers) for one block of drawn indices."""
    rows, n = idx.shape
    counts = np.bincount((idx + np.arange(rows, dtype=np.int64)[:, None] * n).ravel(), minlength=rows * n)
    weights = counts.reshape(rows, n).astype(np.float64)
    totals: Any = None
    for k, part in enumerate(parts):
        exact = np.rint(weights @ part).astype(np.int64)  # every partial sum is an integer below 2^53
        if len(parts) == 1:
            return [[int(v) for v in row] for row in exact.tolist()]
        shifted = exact.astype(object) * (1 << (bits * k))
        totals = shifted if totals is None else totals + shifted
    return [[int(v) for v in row] for row in totals.tolist()]


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
    if n == 0 or not groups:
        return {g: Interval(points[g], points[g]) for g in groups}
    if any(v < 0 for j in per_journey for v in j.values()):
        raise ValueError("credits must not be negative")
    parts, bits = limbs(per_journey, groups)
    budget.check()
    totals: dict[str, list[int]] = {g: [] for g in groups}
    for idx in draw_blocks(seed, n, resamples):
        for row in block_totals(idx, parts, bits):
            for g, v in zip(groups, row, strict=True):
                totals[g].append(v)
        budget.check()  # the size was checked before starting (attribution.compute); the deadline holds
    out = {}
    for g in groups:
        ordered = sorted(totals[g])
        low, high = rank(ordered, (1 - ci) / 2), rank(ordered, (1 + ci) / 2)
        out[g] = Interval(min(low, points[g]), max(high, points[g]))
    return out
