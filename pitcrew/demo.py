"""Demo data for `pitcrew up --demo`: a believable company, loaded through the gateway.

Everything goes in the way a real client would send it: REST calls with tokens,
ERP and CRM deliveries as signed webhooks, so the cross-service flows (ERP
invoice -> budget actual -> KPI spend, contract -> commitment, renewal ->
review workflow) fill the other services on their own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import httpx

from shared.settings import DEV_WEBHOOK_SECRETS

REGIONS = ["EMEA", "NA", "APAC", "LATAM"]
CHANNELS = ["events", "search", "social", "content", "email"]
CAMPAIGNS = {"events": ["summit", "roadshow"], "social": ["launch", "always-on"]}
REGION_WEIGHT = {"EMEA": 1.0, "NA": 1.3, "APAC": 0.7, "LATAM": 0.4}
CHANNEL_BASE = {"events": 16000, "search": 12000, "social": 9000, "content": 6000, "email": 3000}
LEAD_COST = {"events": 180, "search": 60, "social": 45, "content": 90, "email": 25}


class DemoError(RuntimeError):
    pass


class Api:
    """A thin client that fails loudly with the problem detail."""

    def __init__(self, base: str, token: str):
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200, 201, 202), **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if r.status_code not in ok:
            raise DemoError(f"{method} {path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/") else r.text

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.call("POST", path, json=body, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.call("GET", path, **kw)


# Who the demo's tokens are, in notify's directory (roles resolve to them; e-mail goes to the sink).
DEMO_PEOPLE = (
    "id,name,email,roles,scopes,timezone,calendar,team\n"
    "dev-admin,Dev Admin,admin@demo.pitcrew.local,admin,,UTC,,ops\n"
    "maria,Maria Marketer,maria@demo.pitcrew.local,marketer,region:EMEA,Europe/Berlin,DE,emea\n"
    "erik,Erik Approver,erik@demo.pitcrew.local,approver,region:EMEA,Europe/Stockholm,SE,emea\n"
    "akira,Akira Approver,akira@demo.pitcrew.local,approver,region:APAC,Asia/Tokyo,JP,apac\n"
    "fiona,Fiona Finance,fiona@demo.pitcrew.local,finance,,Europe/London,GB,finance\n"
    "mo,Mo Ops,mo@demo.pitcrew.local,mops,,Europe/Berlin,DE,mops\n"
)


def _token(sub: str, roles: list[str], scopes: list[str] | None = None) -> str:
    from gateway.devtokens import mint_dev_token
    from gateway.settings import Settings as GatewaySettings

    return mint_dev_token(GatewaySettings(), sub, roles, scopes or [], ttl=3600)


def _webhook_secrets() -> dict[str, str]:
    raw = os.environ.get("PITCREW_GATEWAY_WEBHOOK_SECRETS")
    return json.loads(raw) if raw else DEV_WEBHOOK_SECRETS


def _send_webhook(base: str, secrets: dict[str, str], source: str, type_: str, data: dict, delivery: str) -> None:
    body = json.dumps({"type": type_, "data": data}).encode()
    ts = str(int(time.time()))
    # Signed over the delivery id, the timestamp and the body (docs/gateway.md).
    sig = hmac.new(secrets[source].encode(), f"{delivery}.{ts}.".encode() + body, hashlib.sha256).hexdigest()
    r = httpx.post(
        f"{base}/webhooks/{source}",
        content=body,
        timeout=60,
        headers={
            "Content-Type": "application/json",
            "X-Pitcrew-Timestamp": ts,
            "X-Pitcrew-Delivery": delivery,
            "X-Pitcrew-Signature": f"sha256={sig}",
        },
    )
    if r.status_code not in (200, 202):
        raise DemoError(f"webhook {source} {type_} -> {r.status_code}: {r.text[:300]}")


def _money(value: float | int | Decimal) -> str:
    return str(Decimal(str(value)).quantize(Decimal("0.01")))


def load_demo(
    gateway_url: str, token: str, echo: Callable[[str], object] = print, today: dt.date | None = None
) -> dict[str, Any]:
    """Load the demo company; returns a few ids the walkthrough refers to."""
    rnd = random.Random(2026)
    today = today or dt.date.today()
    year = today.year
    months = [f"{year}-{m:02d}" for m in range(1, 13)]
    elapsed = [p for p in months if p < today.strftime("%Y-%m")]
    admin = Api(gateway_url, token)
    secrets = _webhook_secrets()
    out: dict[str, Any] = {"fiscal_year": year}

    if any(
        p["fiscal_year"] == year and p["name"].startswith("FY")
        for p in admin.get("/budget/v1/plans", params={"limit": 200})["items"]
    ):
        echo("demo data: already loaded (a demo plan for this year exists); nothing to do")
        return out

    # The people first, so notify tells them about what follows (mail lands in ./var/mail).
    echo("  notify: the people who approve, ask and own (their e-mail goes to the local SMTP sink)")
    admin.call(
        "POST",
        "/notify/v1/people/import",
        content=DEMO_PEOPLE,
        headers={"Content-Type": "text/csv"},
    )

    # Workflow first, so the approvals that budget requests find their definitions.
    echo("  workflow: business calendars and approval definitions")
    admin.post(
        "/workflow/v1/calendars",
        {
            "key": "hq-berlin",
            "timezone": "Europe/Berlin",
            "hours": {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": {"country": "DE", "subdivision": "BE"},
            "closed_dates": [f"{year}-12-24", f"{year}-12-31"],
        },
        ok=(201, 409),
    )
    admin.post(
        "/workflow/v1/calendars",
        {
            "key": "follow-the-sun",
            "timezone": "UTC",
            "hours": {d: ["00:00", "24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        },
        ok=(201, 409),
    )
    admin.post(
        "/workflow/v1/definitions",
        {
            "key": "events-approval",
            "name": "Event spend approval",
            "trigger": {
                "event": "budget.commitment.requested",
                "conditions": [
                    {"field": "channel", "op": "eq", "value": "events"},
                    {"field": "amount", "op": "gte", "value": "10000"},
                ],
            },
            "stages": [
                {
                    "name": "Regional approval",
                    "mode": "any",
                    "assignees": {"roles": ["approver"], "users": [], "scope_from_context": ["region"]},
                    "sla": {"business_hours": 8, "calendar": "hq-berlin", "warn_at": 0.75},
                    "escalation": {"reassign_to_role": "mops"},
                },
                {
                    "name": "Finance sign-off",
                    "assignees": {"roles": ["finance"], "users": []},
                    "mode": "any",
                    "sla": {"business_hours": 16, "calendar": "hq-berlin", "warn_at": 0.75},
                    "escalation": {"reassign_to_role": "mops"},
                },
            ],
        },
        ok=(201, 409),
    )
    admin.post(
        "/workflow/v1/definitions",
        {
            "key": "social-fast-track",
            "name": "Social spend fast track (1-minute SLA)",
            "trigger": {
                "event": "budget.commitment.requested",
                "conditions": [{"field": "channel", "op": "eq", "value": "social"}],
            },
            "stages": [
                {
                    "name": "Social lead approval",
                    "assignees": {"roles": ["approver"], "users": []},
                    "mode": "any",
                    "sla": {"business_hours": "0.0167", "calendar": "follow-the-sun", "warn_at": 0.5},
                    "escalation": {"reassign_to_role": "mops"},
                },
            ],
        },
        ok=(201, 409),
    )

    echo("  budget: plan, ~60 lines, a year of allocations")
    plan = admin.post(
        "/budget/v1/plans",
        {
            "name": f"FY{year} Global Marketing",
            "fiscal_year": year,
            "currency": "EUR",
            "overspend_policy": "block",
            "approval_threshold": "10000.00",
        },
    )
    out["plan_id"] = plan_id = plan["id"]
    # The spreadsheet a marketing team already has: lines and a year of allocations, one import.
    rows: list[dict[str, str]] = []
    leaves: list[str] = []
    dims_of: dict[str, dict[str, str]] = {}

    def line(code: str, name: str, parent: str | None, **dims: str) -> None:
        dims_of[code] = dims
        rows.append({"code": code, "parent_code": parent or "", "name": name, **dims})

    for region in REGIONS:
        line(region, f"{region} marketing", None, region=region)
        for channel in CHANNELS:
            code = f"{region}-{channel.upper()}"
            line(
                code,
                f"{region} {channel}",
                region,
                region=region,
                channel=channel,
                cost_center=f"CC-{region}-MKT",
                owner=f"{region.lower()}-lead",
            )
            camps = CAMPAIGNS.get(channel, [])
            for camp in camps:
                ccode = f"{code}-{camp.upper()}"
                line(ccode, f"{region} {channel}: {camp}", code, region=region, channel=channel, campaign=camp)
                leaves.append(ccode)
            if not camps:
                leaves.append(code)
    line("GLOBAL", "Global brand", None, region="GLOBAL")
    for channel in CHANNELS:
        line(f"GLOBAL-{channel.upper()}", f"Global {channel}", "GLOBAL", region="GLOBAL", channel=channel)
        leaves.append(f"GLOBAL-{channel.upper()}")
    martech = ["CRM", "AUTOMATION", "ANALYTICS", "ADS", "CONTENT"]
    line("MARTECH", "Marketing technology", None, region="GLOBAL", channel="martech")
    for sub in martech:
        line(
            f"MARTECH-{sub}",
            f"Martech: {sub.lower()}",
            "MARTECH",
            region="GLOBAL",
            channel="martech",
            cost_center="CC-MOPS",
        )

    def monthly(code: str) -> int:
        dims = dims_of[code]
        share = 0.5 if dims.get("campaign") else 1.0
        return int(CHANNEL_BASE.get(dims.get("channel", ""), 5000) * REGION_WEIGHT.get(dims["region"], 0.8) * share)

    columns = [
        "code",
        "parent_code",
        "name",
        "region",
        "channel",
        "campaign",
        "cost_center",
        "owner",
        "period",
        "amount",
        "currency",
    ]
    csv_lines = [",".join(columns)]
    for row in rows:
        code = row["code"]
        funded = code in leaves or code.startswith("MARTECH-")
        for period in months if funded else [None]:
            amount = (15000 if code.startswith("MARTECH-") else monthly(code)) if period else None
            cells = {
                **row,
                "period": period or "",
                "amount": _money(amount) if amount else "",
                "currency": "EUR" if amount else "",
            }
            csv_lines.append(",".join(str(cells.get(c, "")) for c in columns))
    admin.call(  # the draft's allocations are the budget that activation locks
        "POST",
        f"/budget/v1/plans/{plan_id}/import",
        content="\n".join(csv_lines) + "\n",
        headers={"Content-Type": "text/csv"},
    )
    admin.post(f"/budget/v1/plans/{plan_id}/activate", {})
    lines: dict[str, dict] = {}
    stack = list(admin.get(f"/budget/v1/plans/{plan_id}/lines")["items"])
    while stack:
        node = stack.pop()
        lines[node["code"]] = node
        stack.extend(node.get("children", []))
    out["line_count"] = len(lines)
    admin.post("/budget/v1/fx-rates", {"base": "USD", "quote": "EUR", "date": f"{year}-01-01", "rate": "0.92"})

    echo(f"  ERP: purchase orders and invoices for {len(elapsed)} months, as signed webhooks")
    deliveries: list[tuple[str, str, dict, str]] = []
    # The running month too, at its share so far, so its spend has something to project.
    erp_months = [(p, 1.0) for p in elapsed]
    if today.day > 1:
        erp_months.append((today.strftime("%Y-%m"), (today.day - 1) / 30))
    for code in leaves:
        for period, share in erp_months:
            budget = monthly(code)
            po_amount = max(1, int(min(9500, int(budget * rnd.uniform(0.55, 0.8))) * share))
            po = f"PO-{code}-{period}"
            base = {
                "fiscal_year": year,
                "budget_line": code,
                "period": period,
                "currency": "EUR",
                "vendor": rnd.choice(["Eventify", "Searchly", "Socialize", "Inkwell", "Mailbird"]),
            }
            deliveries.append(
                (
                    "erp",
                    "purchase_order.created",
                    {
                        **base,
                        "po_number": po,
                        "revision": 1,
                        "amount": _money(po_amount),
                        "description": f"{code} {period}",
                    },
                    f"demo-po-{po}",
                )
            )
            invoiced = int(po_amount * rnd.uniform(0.7, 1.0))
            deliveries.append(
                (
                    "erp",
                    "invoice.posted",
                    {**base, "invoice_number": f"INV-{code}-{period}", "po_number": po, "amount": _money(invoiced)},
                    f"demo-inv-{code}-{period}",
                )
            )

    def send(d: tuple[str, str, dict, str]) -> None:
        _send_webhook(gateway_url, secrets, *d)

    # Orders before their invoices: send all orders, then all invoices.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, [d for d in deliveries if d[1].startswith("purchase_order")]))
        list(pool.map(send, [d for d in deliveries if d[1] == "invoice.posted"]))
    out["erp_deliveries"] = len(deliveries)

    echo("  CRM: leads, opportunities and revenue; attribution journeys")
    # Each elapsed month on its 15th; the running month so far too (its share of the month, dated
    # yesterday), so the KPI chart's month in progress has something to project.
    crm_days = [(p, 1.0, dt.datetime.strptime(p + "-15", "%Y-%m-%d").replace(tzinfo=dt.UTC)) for p in elapsed]
    if today.day > 1:
        so_far = dt.datetime.combine(today - dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC)
        crm_days.append((today.strftime("%Y-%m"), (today.day - 1) / 30, so_far))
    items: list[dict] = []
    for region in REGIONS:
        for channel in CHANNELS:
            for period, share, day in crm_days:
                spend = CHANNEL_BASE[channel] * REGION_WEIGHT[region] * 0.65 * share
                leads = max(1, int(spend / LEAD_COST[channel] * rnd.uniform(0.8, 1.2)))
                dims = {"region": region, "channel": channel}
                key = f"{region}-{channel}-{period}"
                funnel = {
                    "leads": leads,
                    "mqls": int(leads * 0.45),
                    "sqls": int(leads * 0.2),
                    "opportunities": int(leads * 0.08),
                    "won_deals": max(0, int(leads * 0.025)),
                }
                for mtype, count in funnel.items():
                    items.append(
                        {
                            "type": mtype,
                            "value": str(count),
                            "time": day.isoformat(),
                            "dimensions": dims,
                            "source": "crm",
                            "external_id": f"demo-{mtype}-{key}",
                        }
                    )
                revenue = funnel["won_deals"] * rnd.randint(9000, 16000)
                items.append(
                    {
                        "type": "revenue",
                        "value": _money(revenue),
                        "time": day.isoformat(),
                        "dimensions": dims,
                        "source": "crm",
                        "external_id": f"demo-revenue-{key}",
                    }
                )
    for start in range(0, len(items), 5000):
        admin.post("/kpi/v1/measurements", {"items": items[start : start + 5000]})
    for i in range(5):  # a few through the real CRM webhook path
        _send_webhook(
            gateway_url,
            secrets,
            "crm",
            "lead.created",
            {
                "id": f"demo-lead-{i}",
                "time": dt.datetime.now(dt.UTC).isoformat(),
                "channel": "search",
                "campaign": "brand",
                "region": "EMEA",
            },
            f"demo-crm-lead-{i}",
        )
    touchpoints, conversions = [], []
    for j in range(300):
        jid = f"demo-journey-{j}"
        journey_start = dt.datetime(year, rnd.randint(1, max(1, today.month - 1)), rnd.randint(1, 28), tzinfo=dt.UTC)
        for k in range(rnd.randint(1, 5)):
            touchpoints.append(
                {
                    "journey_id": jid,
                    "time": (journey_start + dt.timedelta(days=3 * k)).isoformat(),
                    "channel": rnd.choice(CHANNELS),
                    "campaign": "demo",
                }
            )
        if rnd.random() < 0.4:
            conversions.append(
                {
                    "journey_id": jid,
                    "time": (journey_start + dt.timedelta(days=20)).isoformat(),
                    "value": _money(rnd.randint(500, 5000)),
                }
            )
    admin.post("/kpi/v1/touchpoints", {"items": touchpoints})
    admin.post("/kpi/v1/conversions", {"items": conversions})
    quarter = (today.month - 1) // 3 + 1
    for metric, value in (("cpl", "85.00"), ("roi", "2.5"), ("leads", "4000")):
        admin.post("/kpi/v1/targets", {"metric": metric, "period": f"{year}-Q{quarter}", "value": value}, ok=(201, 409))

    echo("  registry: 30 tools, contracts, utilization, integrations")
    out["tools"] = _load_registry(admin, rnd, today)

    echo("  approvals: requests waiting, approved, rejected and breached")
    marketer = Api(gateway_url, _token("maria", ["marketer"], ["region:EMEA"]))
    approver = Api(gateway_url, _token("erik", ["approver"], ["region:EMEA"]))
    current = today.strftime("%Y-%m")
    requests = [
        ("EMEA-EVENTS-SUMMIT", "12500.00", "Summit keynote stage"),
        ("EMEA-EVENTS-ROADSHOW", "18000.00", "Nordics roadshow venue"),
        ("EMEA-EVENTS-SUMMIT", "11000.00", "Summit catering"),
        ("EMEA-SOCIAL-LAUNCH", "10500.00", "Launch influencer package"),
        ("EMEA-SOCIAL-ALWAYS-ON", "12000.00", "Paid social burst"),
    ]
    for code in {c for c, _, _ in requests}:  # a Q4 top-up, so the requests fit but need approval
        admin.post(
            "/budget/v1/allocations",
            {
                "line_id": lines[code]["id"],
                "period": current,
                "amount": "40000.00",
                "currency": "EUR",
                "memo": "Q4 top-up",
            },
        )
    made = []
    for code, asked, memo in requests:
        made.append(
            marketer.post(
                "/budget/v1/commitments",
                {
                    "line_id": lines[code]["id"],
                    "period": current,
                    "amount": asked,
                    "currency": "EUR",
                    "external_ref": f"REQ-{uuid.uuid4().hex[:6].upper()}",
                    "memo": memo,
                },
            )
        )
    out["pending_commitments"] = [c["id"] for c in made]
    # Decide two of the event requests; leave the rest waiting, and the social ones to breach their SLA.
    deadline = time.monotonic() + 30
    events_tasks: list[dict] = []
    while time.monotonic() < deadline and len(events_tasks) < 2:
        events_tasks = [
            t
            for t in approver.get("/workflow/v1/tasks", params={"assignee": "me"})["items"]
            if approver.get(f"/workflow/v1/instances/{t['instance_id']}")["definition_key"] == "events-approval"
        ]
        time.sleep(0.5)
    if len(events_tasks) >= 2:
        approver.post(f"/workflow/v1/tasks/{events_tasks[0]['id']}/approve", {"comment": "Fits the Q plan"})
        approver.post(f"/workflow/v1/tasks/{events_tasks[1]['id']}/reject", {"comment": "Re-quote with two vendors"})
    echo(
        f"demo data: {len(lines)} budget lines, {len(deliveries)} ERP deliveries, {len(items)} CRM measurements, "
        f"{len(out['tools'])} tools, {len(made)} approval requests (social ones breach their 1-minute SLA)"
    )
    return out


TOOLS = [
    # name, vendor, category, capabilities, team, person, lifecycle, annual cost, seats, active, line
    (
        "Acme CRM",
        "Acme",
        "social_relationships",
        ["crm", "email"],
        "sales-ops",
        "dana",
        "active",
        48000,
        120,
        104,
        "MARTECH-CRM",
    ),
    (
        "Pardot-like Automation",
        "Autom8",
        "social_relationships",
        ["marketing_automation", "email", "forms"],
        "mops",
        "li",
        "active",
        36000,
        20,
        17,
        "MARTECH-AUTOMATION",
    ),
    (
        "MailBlast",
        "Blast Inc",
        "social_relationships",
        ["email"],
        "mops",
        "li",
        "active",
        9000,
        10,
        3,
        "MARTECH-AUTOMATION",
    ),
    (
        "Insight Analytics",
        "Insight",
        "data",
        ["analytics", "dashboards"],
        "analytics",
        "omar",
        "active",
        24000,
        40,
        31,
        "MARTECH-ANALYTICS",
    ),
    ("DashBoardy", "Dashy", "data", ["dashboards"], "analytics", "omar", "active", 6000, 25, 2, "MARTECH-ANALYTICS"),
    (
        "CDP One",
        "Segmentix",
        "data",
        ["cdp", "identity_resolution"],
        "data",
        "ines",
        "active",
        60000,
        10,
        9,
        "MARTECH-ANALYTICS",
    ),
    (
        "AdsManager Pro",
        "Admagic",
        "advertising_promotion",
        ["paid_search", "paid_social"],
        "performance",
        "raj",
        "active",
        18000,
        15,
        14,
        "MARTECH-ADS",
    ),
    (
        "SocialScheduler",
        "Chirp",
        "advertising_promotion",
        ["social_publishing", "paid_social"],
        "social",
        "eva",
        "active",
        7200,
        12,
        0,
        "MARTECH-ADS",
    ),
    (
        "CMS Headless",
        "Headless Co",
        "content_experience",
        ["cms", "web"],
        "web",
        "tom",
        "active",
        30000,
        30,
        22,
        "MARTECH-CONTENT",
    ),
    (
        "DAM Vault",
        "Vaultify",
        "content_experience",
        ["dam"],
        "brand",
        "sara",
        "active",
        15000,
        40,
        12,
        "MARTECH-CONTENT",
    ),
    (
        "Webinar Hub",
        "Hubcast",
        "content_experience",
        ["webinars", "events"],
        "events",
        "noah",
        "active",
        12000,
        8,
        6,
        "MARTECH-CONTENT",
    ),
    (
        "EventOS",
        "EventOS",
        "commerce_sales",
        ["events", "registration"],
        "events",
        "noah",
        "active",
        20000,
        10,
        9,
        "MARTECH-CONTENT",
    ),
    (
        "ABM Engine",
        "Targeta",
        "advertising_promotion",
        ["abm", "paid_social"],
        "performance",
        "raj",
        "pilot",
        25000,
        5,
        4,
        "MARTECH-ADS",
    ),
    ("Survey Monkeyish", "Askit", "data", ["surveys"], "mops", None, "active", 3000, 10, 1, "MARTECH-ANALYTICS"),
    (
        "Project Board",
        "Boardly",
        "management",
        ["project_management"],
        "mops",
        "li",
        "active",
        8400,
        60,
        51,
        "MARTECH-AUTOMATION",
    ),
    (
        "BudgetSheet Legacy",
        "Sheetz",
        "management",
        ["budgeting"],
        "finance",
        "ben",
        "sunsetting",
        4000,
        10,
        2,
        "MARTECH-ANALYTICS",
    ),
    (
        "Chatbot Live",
        "Talkie",
        "social_relationships",
        ["chat", "lead_capture"],
        "web",
        "tom",
        "active",
        9600,
        5,
        5,
        "MARTECH-AUTOMATION",
    ),
    ("SEO Suite", "Rankr", "advertising_promotion", ["seo"], "performance", "raj", "active", 5400, 5, 5, "MARTECH-ADS"),
    (
        "Landing Pages",
        "Pagely",
        "content_experience",
        ["web", "forms"],
        "web",
        None,
        "active",
        4800,
        6,
        2,
        "MARTECH-CONTENT",
    ),
    ("Enrichment API", "Enrichly", "data", ["enrichment"], "data", "ines", "active", 12000, 2, 2, "MARTECH-ANALYTICS"),
    ("Consent Manager", "Privy", "data", ["consent"], "legal", "mia", "active", 6000, 3, 3, "MARTECH-ANALYTICS"),
    (
        "Video Studio",
        "Clipster",
        "content_experience",
        ["video"],
        "brand",
        "sara",
        "active",
        7000,
        8,
        0,
        "MARTECH-CONTENT",
    ),
    (
        "Affiliate Tracker",
        "Partnerly",
        "commerce_sales",
        ["affiliates"],
        "performance",
        "raj",
        "evaluating",
        0,
        0,
        0,
        None,
    ),
    ("Reviews Widget", "Starz", "commerce_sales", ["reviews"], "web", "tom", "active", 2400, 2, 1, "MARTECH-CONTENT"),
    (
        "Attribution Lab",
        "Multitouch",
        "data",
        ["attribution", "analytics"],
        "analytics",
        "omar",
        "pilot",
        15000,
        5,
        4,
        "MARTECH-ANALYTICS",
    ),
    ("SMS Sender", "Texto", "social_relationships", ["sms"], "mops", "li", "active", 3600, 3, 0, "MARTECH-AUTOMATION"),
    (
        "Translation Memory",
        "Lingo",
        "content_experience",
        ["localization"],
        "content",
        "lea",
        "active",
        5000,
        6,
        5,
        "MARTECH-CONTENT",
    ),
    (
        "Social Listening",
        "Hearsay",
        "social_relationships",
        ["social_listening"],
        "social",
        "eva",
        "active",
        14000,
        6,
        2,
        "MARTECH-ADS",
    ),
    (
        "Data Warehouse",
        "Snowy",
        "data",
        ["warehouse", "analytics"],
        "data",
        "ines",
        "active",
        40000,
        15,
        14,
        "MARTECH-ANALYTICS",
    ),
    ("Old Email Tool", "Legacy Mail", "social_relationships", ["email"], None, None, "retired", 0, 0, 0, None),
]

INTEGRATIONS = [
    ("Acme CRM", "Pardot-like Automation", ["leads", "contacts"], "two_way", "api"),
    ("Pardot-like Automation", "MailBlast", ["contacts"], "one_way", "api"),
    ("Acme CRM", "CDP One", ["contacts", "opportunities"], "one_way", "api"),
    ("CDP One", "Data Warehouse", ["events", "profiles"], "one_way", "file"),
    ("Data Warehouse", "Insight Analytics", ["spend", "leads"], "one_way", "api"),
    ("Data Warehouse", "DashBoardy", ["spend"], "one_way", "api"),
    ("AdsManager Pro", "Data Warehouse", ["spend"], "one_way", "file"),
    ("CMS Headless", "Landing Pages", ["pages"], "one_way", "api"),
    ("Landing Pages", "Acme CRM", ["leads"], "one_way", "webhook"),
    ("Chatbot Live", "Acme CRM", ["leads"], "one_way", "webhook"),
    ("Webinar Hub", "Acme CRM", ["leads"], "one_way", "api"),
    ("EventOS", "Acme CRM", ["leads"], "one_way", "api"),
    ("Enrichment API", "Acme CRM", ["contacts"], "one_way", "api"),
    ("Consent Manager", "CDP One", ["consents"], "one_way", "api"),
    ("ABM Engine", "Acme CRM", ["accounts"], "two_way", "api"),
    ("Attribution Lab", "Data Warehouse", ["touchpoints"], "one_way", "file"),
    ("DAM Vault", "CMS Headless", ["assets"], "one_way", "api"),
]


def _load_registry(admin: Api, rnd: random.Random, today: dt.date) -> dict[str, str]:
    ids: dict[str, str] = {}
    for index, (name, vendor, category, caps, team, person, lifecycle, cost, seats, active, line_code) in enumerate(
        TOOLS
    ):
        body: dict[str, Any] = {
            "name": name,
            "vendor": vendor,
            "category": category,
            "capabilities": caps,
            "lifecycle": lifecycle,
            "sso": rnd.random() < 0.6,
            "personal_data": "crm" in caps or "cdp" in caps or "email" in caps,
        }
        if team or person:
            body["owner"] = {"team": team, "person": person}
        tool = admin.post("/registry/v1/tools", body)
        ids[name] = tool["id"]
        if cost and line_code:
            # Terms start in different months of this year; a few end soon, so their renewal is due now.
            ends_soon = name in ("MailBlast", "SocialScheduler", "DashBoardy")
            start = dt.date(today.year, 2 + index % 10, 1)
            end = start.replace(year=start.year + 1) - dt.timedelta(days=1)
            if ends_soon:
                start, end = today.replace(month=1, day=15), today + dt.timedelta(days=65)
            admin.post(
                "/registry/v1/contracts",
                {
                    "tool_id": tool["id"],
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "billing_period": "annual",
                    "cost": _money(cost),
                    "currency": "EUR",
                    "seats": seats,
                    "auto_renew": rnd.random() < 0.5,
                    "notice_days": 60 if not ends_soon else 45,
                    "budget_line_code": line_code,
                },
            )
            admin.post(
                "/registry/v1/utilization",
                {
                    "tool_id": tool["id"],
                    "date": (today - dt.timedelta(days=1)).isoformat(),
                    "seats_purchased": seats,
                    "active_users": active,
                    "source": "sso",
                },
            )
    for src, dst, objects, direction, method in INTEGRATIONS:
        admin.post(
            "/registry/v1/integrations",
            {
                "from_tool_id": ids[src],
                "to_tool_id": ids[dst],
                "data_objects": objects,
                "direction": direction,
                "method": method,
                "owner": "mops",
            },
        )
    return ids
