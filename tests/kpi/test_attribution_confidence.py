"""Attribution with confidence: by channel or campaign, a reproducible bootstrap interval per group.

Property tests: the interval holds the point estimate, a seed reproduces it, and it narrows (relative
to the credit) as the journeys grow; the endpoint's bounds answer 422 naming the parameter."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.kpi import bootstrap
from shared.work import Budget

GROUPS = ["search", "email", "social"]
journey = st.dictionaries(st.sampled_from(GROUPS), st.integers(0, 10**9), max_size=3)


@settings(max_examples=150, deadline=None, database=None)
@given(per_journey=st.lists(journey, max_size=40), resamples=st.integers(1, 60), ci=st.floats(0.5, 0.99))
def test_the_interval_holds_the_point_estimate_and_a_seed_reproduces_it(per_journey, resamples, ci):
    found = bootstrap.intervals(Budget(60), per_journey, GROUPS, resamples=resamples, ci=ci, seed=5)
    for g in GROUPS:
        point = sum(j.get(g, 0) for j in per_journey)
        assert found[g].low <= point <= found[g].high
    again = bootstrap.intervals(Budget(60), per_journey, GROUPS, resamples=resamples, ci=ci, seed=5)
    assert again == found


def _journeys(n: int, rnd: random.Random) -> list[dict[str, int]]:
    """Journeys drawn from one population: a channel's credit is often zero, sometimes large."""
    out = []
    for _ in range(n):
        value = rnd.choice([0, 0, 100, 250, 1000, 5000]) * 10**6
        out.append({rnd.choice(GROUPS): value} if value else {})
    return out


@pytest.mark.parametrize("data_seed", range(4))
def test_the_interval_narrows_as_journeys_grow(data_seed):
    """With a fixed seed, each fourfold growth of the journeys narrows every group's relative width
    (about halves it: the standard error of a sum grows as sqrt(n), the sum as n)."""
    rnd = random.Random(data_seed)
    widths = []
    for n in (100, 400, 1600, 6400):
        per_journey = _journeys(n, rnd)
        found = bootstrap.intervals(Budget(60), per_journey, GROUPS, resamples=400, ci=0.95, seed=1)
        points = {g: sum(j.get(g, 0) for j in per_journey) for g in GROUPS}
        widths.append({g: (found[g].high - found[g].low) / points[g] for g in GROUPS})
    for small, large in zip(widths, widths[1:], strict=False):
        for g in GROUPS:
            assert large[g] < small[g] * 0.8, widths


def test_draws_are_uniform_indices_in_blocks_a_seed_reproduces():
    blocks = list(bootstrap.draw_blocks(3, 10, 250_001))
    assert sum(len(b) for b in blocks) == 250_001 and len(blocks) == 2  # 200,000 resamples of 10 per block
    assert all(b.shape[1] == 10 and b.min() >= 0 and b.max() < 10 for b in blocks)
    again = list(bootstrap.draw_blocks(3, 10, 250_001))
    assert all((a == b).all() for a, b in zip(blocks, again, strict=True))
    counts = np.bincount(np.concatenate([b.ravel() for b in blocks]), minlength=10)
    assert counts.min() > 0.99 * counts.mean() and counts.max() < 1.01 * counts.mean()


def _brute_force(per_journey, groups, resamples, ci, seed):
    """The obvious loop over the same draws: add every drawn journey's credits up, take the percentiles."""
    totals = {g: [] for g in groups}
    for block in bootstrap.draw_blocks(seed, len(per_journey), resamples):
        for drawn in block.tolist():
            acc = dict.fromkeys(groups, 0)
            for i in drawn:
                for g, v in per_journey[i].items():
                    acc[g] += v
            for g in groups:
                totals[g].append(acc[g])
    out = {}
    for g in groups:
        ordered, point = sorted(totals[g]), sum(j.get(g, 0) for j in per_journey)
        low, high = bootstrap.rank(ordered, (1 - ci) / 2), bootstrap.rank(ordered, (1 + ci) / 2)
        out[g] = bootstrap.Interval(min(low, point), max(high, point))
    return out


@settings(max_examples=120, deadline=None, database=None)
@given(
    per_journey=st.lists(
        st.dictionaries(st.sampled_from(GROUPS), st.integers(0, 10**22), max_size=3), min_size=1, max_size=30
    ),
    resamples=st.integers(1, 40),
    ci=st.floats(0.5, 0.99),
    seed=st.integers(0, 2**63 - 1),
)
def test_the_arrays_equal_a_brute_force_loop_over_the_same_draws_even_past_64_bits(per_journey, resamples, ci, seed):
    """Credits up to 10**22 micro-units: several 53-bit limbs, totals past int64; still exact."""
    found = bootstrap.intervals(Budget(60), per_journey, GROUPS, resamples=resamples, ci=ci, seed=seed)
    assert found == _brute_force(per_journey, GROUPS, resamples, ci, seed)


def test_limbs_cut_credits_so_float_sums_stay_exact():
    per_journey = [{"search": 2**70 + 12345, "email": 7}, {"social": 2**52 + 1}]
    parts, bits = bootstrap.limbs(per_journey, GROUPS)
    assert 2 * 2**bits < 2**53 and len(parts) > 1
    rebuilt = sum(int(p[0, 0]) << (bits * k) for k, p in enumerate(parts))
    assert rebuilt == 2**70 + 12345


T = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)


async def _load(client, n: int = 120) -> None:
    rnd = random.Random(3)
    tps, convs = [], []
    for j in range(n):
        for k in range(rnd.randint(1, 3)):
            channel = rnd.choice(GROUPS)
            tps.append(
                {
                    "journey_id": f"j{j}",
                    "time": (T + dt.timedelta(days=j % 20, hours=k)).isoformat(),
                    "channel": channel,
                    "campaign": f"{channel}-spring" if k else None,
                }
            )
        convs.append(
            {"journey_id": f"j{j}", "time": (T + dt.timedelta(days=j % 20 + 1)).isoformat(), "value": "120.00"}
        )
    assert (await client.post("/v1/touchpoints", json={"items": tps})).status_code == 201
    assert (await client.post("/v1/conversions", json={"items": convs})).status_code == 201


PARAMS = {"from": "2027-03-01", "to": "2027-03-31", "model": "linear"}


@pytest.mark.db
async def test_the_endpoint_groups_by_campaign_and_gives_reproducible_intervals(kpi):
    await _load(kpi.client)
    plain = (await kpi.client.get("/v1/attribution", params={**PARAMS, "group_by": "campaign"})).json()
    assert plain["group_by"] == "campaign" and "ci" not in plain
    campaigns = {c["campaign"] for c in plain["credits"]}
    assert "(no campaign)" in campaigns and "search-spring" in campaigns
    assert all("channel" not in c and "interval" not in c for c in plain["credits"])
    assert sum(Decimal(c["credit"]) for c in plain["credits"]) == Decimal("14400.00")
    boot = {**PARAMS, "ci": 0.9, "resamples": 300, "seed": 11}
    r = await kpi.client.get("/v1/attribution", params=boot)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["ci"], body["resamples"], body["seed"], body["journeys"]) == (0.9, 300, 11, 120)
    for c in body["credits"]:
        low, high = Decimal(c["interval"]["low"]), Decimal(c["interval"]["high"])
        assert low <= Decimal(c["credit"]) <= high and low < high
    assert (await kpi.client.get("/v1/attribution", params=boot)).json() == body  # the seed reproduces it
    other = (await kpi.client.get("/v1/attribution", params={**boot, "seed": 12})).json()
    assert [c["interval"] for c in other["credits"]] != [c["interval"] for c in body["credits"]]
    text = (await kpi.client.get("/v1/attribution", params={**boot, "format": "csv"})).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["ci_low"] == body["credits"][0]["interval"]["low"] and "channel" in rows[0]


@pytest.mark.db
@pytest.mark.parametrize(
    "bad, field",
    [
        ({"group_by": "region"}, "query.group_by"),
        ({"ci": 1.5}, "query.ci"),
        ({"ci": 0}, "query.ci"),
        ({"ci": 0.95, "resamples": 0}, "query.resamples"),
        ({"ci": 0.95, "resamples": 10_001}, "query.resamples"),
        ({"ci": 0.95, "seed": -1}, "query.seed"),
    ],
)
async def test_bad_parameters_are_422_naming_them(kpi, bad, field):
    r = await kpi.client.get("/v1/attribution", params={**PARAMS, **bad})
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field


@pytest.mark.db
async def test_a_bootstrap_past_its_step_limit_is_422_before_it_runs(kpi_db):
    from tests.kpi.conftest import start_kpi

    async for k in start_kpi(kpi_db, "nats://127.0.0.1:1", nats_enabled=False, attribution_max_bootstrap_steps=5_000):
        await _load(k.client)
        r = await k.client.get("/v1/attribution", params={**PARAMS, "ci": 0.95, "resamples": 100})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.resamples", r.text
        ok = await k.client.get("/v1/attribution", params={**PARAMS, "ci": 0.95, "resamples": 10})
        assert ok.status_code == 200
