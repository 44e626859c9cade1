"""The KPI page draws the month still running projected to the whole month, and says so."""

from __future__ import annotations

import datetime as dt
import json
import re
from calendar import monthrange
from decimal import Decimal

from tests.console.conftest import sign_in
from tests.console.test_sections import ANSWERS, fake_gateway


def month_series(today: dt.date) -> dict:
    last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    points = [
        {"bucket": last_month.isoformat(), "value": "31000.00"},
        {"bucket": today.replace(day=1).isoformat(), "value": "1234.00"},
    ]
    return {"unit": "currency", "series": [{"group": {}, "points": points}]}


def chart_data(html: str) -> dict:
    found = re.search(r'<script type="application/json" id="metric-chart-data">(.*?)</script>', html, re.S)
    assert found, "the page carries no chart data"
    return json.loads(found.group(1))


async def test_the_running_month_is_projected_to_the_full_month_and_labelled(console):
    today = dt.date.today()
    days = monthrange(today.year, today.month)[1]
    spend = {**ANSWERS["/kpi/v1/metrics/spend"], "kind": "base", "aggregation": "sum"}
    answers = {"/kpi/v1/metrics/spend/series": month_series(today), "/kpi/v1/metrics/spend": spend}
    async with fake_gateway(answers) as (url, _), console(gateway_url=url) as client:
        await sign_in(client, user="carla", roles=("analyst",))
        r = await client.get("/kpis", params={"metric": "spend", "grain": "month", "group_by": ""})
    assert r.status_code == 200, r.text
    expected = (Decimal("1234.00") * days / today.day).quantize(Decimal("0.01"))
    chart = chart_data(r.text)
    assert chart["mode"] == "projected" and chart["label"] == "projected"
    assert chart["series"][0]["projected"][1] == float(expected)
    note = re.search(r'<p class="muted" id="partial-note" data-mode="projected">(.*?)</p>', r.text, re.S)
    assert note, "no note on the dashed segment"
    assert "<strong>projected</strong>" in note.group(1) and f"{today.day} of {days} days counted" in note.group(1)
    assert f'data-projected="{expected}"' in r.text  # the table has the projection beside the figure so far


async def test_a_ratio_is_drawn_at_its_value_so_far_labelled_month_to_date(console):
    today = dt.date.today()
    cpl = {**ANSWERS["/kpi/v1/metrics/spend"], "kind": "derived", "aggregation": None, "formula": "spend / leads"}
    answers = {"/kpi/v1/metrics/spend/series": month_series(today), "/kpi/v1/metrics/spend": cpl}
    async with fake_gateway(answers) as (url, _), console(gateway_url=url) as client:
        await sign_in(client, user="carla", roles=("analyst",))
        r = await client.get("/kpis", params={"metric": "spend", "grain": "month", "group_by": ""})
    chart = chart_data(r.text)
    assert chart["mode"] == "to_date" and chart["series"][0]["projected"][1] == 1234.0
    assert 'data-mode="to_date"' in r.text and "<strong>month to date</strong>" in r.text
    assert "not projected" in r.text and "data-projected=" not in r.text
