"""Console pages: server time per page beside the time of the API calls the page makes, in one run.

    .venv/bin/python bench/console_pages.py            # 40 requests per page
    .venv/bin/python bench/console_pages.py --quick    # 10

Starts the real stack (`pitcrew up` minus the CLI: NATS, the services, the gateway, the console) on
free ports with the demo data, signs in through the gateway like a browser, and requests each page
repeatedly. Per page it prints:

- page p50/p95: the console's server time (its Server-Timing header: request in, HTML out);
- API-in-page p50/p95: the part of that time the page waited for the gateway;
- direct API p50/p95 (the baseline): the same calls made straight to the gateway by this script,
  one after the other, as a client that needed those figures without the console would;
- ratio: page p50 over direct API p50.

The aim (issue 18): every page under 150 ms p95 and none above 1.5x its API calls. Pages and their
direct calls alternate request by request, so a machine slowing down affects both alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.devtokens import mint_dev_token  # noqa: E402
from gateway.settings import Settings as GatewaySettings  # noqa: E402
from pitcrew.demo import load_demo  # noqa: E402
from pitcrew.launcher import free_port, start_stack  # noqa: E402
from pitcrew.topology import PROCESSES  # noqa: E402

TIMING = re.compile(r"(page|api);dur=([0-9.]+)")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def signed_in(base: str, user: str, roles: list[str], scopes: str = "") -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=60)
    form = client.get("/signin").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf, "no sign-in form"
    data = {"csrf": csrf.group(1), "user": user, "role": roles, "scopes": scopes, "tz": "Europe/Berlin"}
    assert client.post("/signin/dev", data=data).status_code == 303
    return client


def pages(demo: dict, api: httpx.Client) -> dict[str, tuple[str, Callable[[], object]]]:
    """Page path and the API calls it makes, made directly."""
    plan = demo["plan_id"]
    tree = api.get(f"/budget/v1/plans/{plan}/lines").json()
    line = tree["items"][0]["children"][0]["id"]
    period = {"from": tree["from"], "to": tree["to"]}
    today = dt.date.today()
    first, last = today.replace(month=1, day=1).isoformat(), today.isoformat()
    month = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")

    def plan_calls() -> None:
        api.get(f"/budget/v1/plans/{plan}")
        api.get(f"/budget/v1/plans/{plan}/lines")
        api.get(f"/budget/v1/plans/{plan}/summary", params=period)

    def line_calls() -> None:
        detail = api.get(f"/budget/v1/lines/{line}").json()
        api.get(f"/budget/v1/plans/{detail['plan_id']}")
        api.get(f"/budget/v1/lines/{line}/balance")
        api.get(f"/budget/v1/lines/{line}/entries", params={"limit": 100})
        api.get(f"/budget/v1/plans/{plan}/lines")

    def figure_calls() -> None:
        detail = api.get(f"/budget/v1/lines/{line}").json()
        api.get(f"/budget/v1/lines/{line}/balance")
        cursor = None
        while True:  # every entry of the line, as the drill-down reads them
            params = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = api.get(f"/budget/v1/lines/{line}/entries", params=params).json()
            cursor = page.get("next_cursor")
            if not cursor:
                break
        api.get(f"/budget/v1/plans/{detail['plan_id']}")

    def approvals_calls() -> None:
        tasks = api.get("/workflow/v1/tasks", params={"assignee": "me", "limit": 100}).json()["items"]
        for t in tasks[:25]:
            api.get(f"/workflow/v1/instances/{t['instance_id']}")
        api.get("/workflow/v1/reports/sla")

    def kpi_calls() -> None:
        api.get("/kpi/v1/metrics", params={"limit": 200})
        api.get("/kpi/v1/scorecard", params={"metrics": "spend,leads,cpl,revenue,roi", "period": month})
        api.get(
            "/kpi/v1/metrics/spend/series", params={"from": first, "to": last, "grain": "month", "group_by": "channel"}
        )
        api.get("/kpi/v1/metrics/spend")
        api.get("/kpi/v1/attribution", params={"from": first, "to": last, "model": "linear"})
        api.get("/kpi/v1/quality")

    def stack_calls() -> None:
        api.get("/registry/v1/tools", params={"limit": 200})
        for path in ("categories", "renewals", "utilization", "overlaps", "graph", "analysis"):
            api.get(f"/registry/v1/{path}")
        api.get("/registry/v1/contracts", params={"limit": 200})

    def admin_calls() -> None:
        api.get("/gateway/v1/api-keys", params={"limit": 100})
        api.get("/gateway/v1/webhook-deliveries", params={"limit": 50})
        for sub in api.get("/notify/v1/subscriptions", params={"limit": 20}).json()["items"]:
            api.get(f"/notify/v1/subscriptions/{sub['id']}/deliveries", params={"limit": 50})

    return {
        "budget plan": (f"/plans/{plan}", plan_calls),
        "budget line": (f"/lines/{line}", line_calls),
        "line figure": (f"/lines/{line}/figures/committed", figure_calls),
        "approvals": ("/approvals", approvals_calls),
        "kpis": ("/kpis", kpi_calls),
        "stack": ("/stack", stack_calls),
        "admin": ("/admin", admin_calls),
    }


def measure(browser: httpx.Client, path: str, direct: Callable[[], object], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"page": [], "api": [], "direct": []}
    browser.get(path)  # warm: templates compiled, connections open
    direct()
    for _ in range(n):
        r = browser.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[-500:])
        found = dict(TIMING.findall(r.headers["server-timing"]))
        out["page"].append(float(found["page"]))
        out["api"].append(float(found["api"]))
        started = time.perf_counter()
        direct()
        out["direct"].append((time.perf_counter() - started) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 10 if args.quick else 40
    var = Path(tempfile.mkdtemp(prefix="pitcrew-console-bench-"))
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(free_port()) for name in PROCESSES})
    env["PITCREW_NATS_URL"] = f"nats://127.0.0.1:{free_port()}"
    env["PITCREW_VAR_DIR"] = str(var)
    env["PITCREW_GATEWAY_RATE_LIMIT_READ"] = "1000000/minute"  # one person makes every request here
    print("starting the stack and loading the demo data ...", flush=True)
    stack, urls, _ = start_stack(var_dir=var, env=env, echo=lambda *_: None, ready_timeout=180)
    try:
        base = urls["gateway"]
        demo = load_demo(
            base, mint_dev_token(GatewaySettings(), "dev-admin", ["admin"], ttl=3600), echo=lambda *_: None
        )
        token = mint_dev_token(GatewaySettings(), "root", ["admin"], ttl=3600)
        api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        browser = signed_in(base, "root", ["admin"])
        print(f"{n} requests per page, as an admin (every part visible), through the gateway\n")
        head = (
            f"{'page':<12} {'page p50':>9} {'p95':>7} {'API-in-page p50':>16} {'p95':>7} "
            f"{'direct API p50':>15} {'p95':>7} {'ratio':>6}"
        )
        print(head)
        print("-" * len(head))
        worst = 0.0
        for name, (path, direct) in pages(demo, api).items():
            m = measure(browser, path, direct, n)
            p50, d50 = statistics.median(m["page"]), statistics.median(m["direct"])
            worst = max(worst, p50 / d50)
            print(
                f"{name:<12} {p50:>7.1f}ms {pct(m['page'], 95):>5.1f}ms {statistics.median(m['api']):>14.1f}ms "
                f"{pct(m['api'], 95):>5.1f}ms {d50:>13.1f}ms {pct(m['direct'], 95):>5.1f}ms {p50 / d50:>5.2f}x"
            )
        print(f"\nworst page/direct-API ratio {worst:.2f}x (aim <= 1.5x); aim p95 < 150 ms")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
