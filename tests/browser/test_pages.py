"""Budget drill-down, the renewals timeline and a CSV import with many bad rows, against the API."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import Demo, check_page, sign_in
from tests.browser.test_approvals import ask
from tests.browser.test_console import line_by_code, wait_until

pytestmark = pytest.mark.browser


def test_a_figure_drills_down_to_the_ledger_entries_behind_it(browser: Browser, demo: Demo):
    line = line_by_code(demo, "EMEA-EVENTS-SUMMIT")
    page = sign_in(browser, demo, "fiona", ["finance"])
    page.goto(f"{demo.url}/lines/{line['id']}")
    page.click("#line-balance a[href*='/figures/committed']")
    api = demo.api("fiona", "finance")
    balance = api.get(f"/budget/v1/lines/{line['id']}/balance").json()
    entries = api.get(f"/budget/v1/lines/{line['id']}/entries", params={"limit": 500}).json()["items"]
    behind = [
        e for e in entries if balance["from"] <= e["period"] <= balance["to"] and Decimal(e["effect"]["committed"]) != 0
    ]
    assert behind, "the demo commits on the summit line"
    shown = [r.get_attribute("data-entry") for r in page.locator("#figure-entries tbody tr").all()]
    assert sorted(shown) == sorted(e["id"] for e in behind)
    assert page.get_attribute("#figure-sum [data-figure=committed]", "data-value") == balance["committed"]
    assert Decimal(page.get_attribute("#figure-sum [data-figure=sum]", "data-value")) == Decimal(balance["committed"])
    assert "equal" in page.inner_text("#figure-sum")
    check_page(page, "line-figure-committed")
    # Every figure of a leaf line in the plan's tree drills down the same way.
    page.goto(f"{demo.url}/plans/{demo.ids['plan_id']}")
    page.click(f"tr[data-line='{line['code']}'] td[data-figure=spent] a")
    assert page.get_attribute("#figure-sum [data-figure=spent]", "data-value") is not None
    assert "equal" in page.inner_text("#figure-sum")


def test_the_renewals_timeline_marks_notice_deadlines(browser: Browser, demo: Demo):
    page = sign_in(browser, demo, "otto", ["mops"])
    page.goto(f"{demo.url}/stack?within_days=365")
    renewals = demo.api("otto", "mops").get("/registry/v1/renewals", params={"within_days": 365}).json()["items"]
    assert renewals, "the demo has contracts ending within a year"
    rows = page.locator("#renewal-timeline tbody tr")
    assert sorted(r.get_attribute("data-contract") for r in rows.all()) == sorted(r["contract_id"] for r in renewals)
    assert page.locator("#renewal-timeline .notice-mark").count() == len(renewals)
    contracts = demo.api("otto", "mops").get("/registry/v1/contracts", params={"limit": 200}).json()["items"]
    shown = [r.get_attribute("data-contract") for r in page.locator("#contracts tbody tr").all()]
    assert sorted(shown) == sorted(c["id"] for c in contracts) and len(shown) >= len(renewals)
    today = dt.date.today()
    for r in renewals:
        urgency = page.get_attribute(f"#renewal-timeline tr[data-contract='{r['contract_id']}']", "data-urgency")
        days = (dt.date.fromisoformat(r["notice_deadline"]) - today).days
        assert urgency == ("passed" if days < 0 else "soon" if days <= 30 else "later"), (r, urgency)


def test_a_csv_import_lists_every_bad_row_however_many(browser: Browser, demo: Demo, tmp_path):
    page = sign_in(browser, demo, "olga", ["mops"])
    page.goto(f"{demo.url}/plans/{demo.ids['plan_id']}")
    rows = [f"BAD-{i},,Bad {i},2026-{13 + i},100.00,EUR" for i in range(12)]
    bad = tmp_path / "many.csv"
    bad.write_text("code,parent_code,name,period,amount,currency\n" + "\n".join(rows) + "\n")
    page.set_input_files("#file", str(bad))
    page.click("form[action$='/import'] button[type=submit]")
    items = page.locator(".flash-error .fields li").all_inner_texts()
    assert len([i for i in items if i.lower().startswith("row ")]) >= 12, items
    for n in range(2, 14):  # the header is row 1
        assert any(i.lower().startswith(f"row {n},") or i.lower().startswith(f"row {n} ") for i in items), (n, items)


class Partner(BaseHTTPRequestHandler):
    """A partner's webhook endpoint: answers 500 until told to accept; counts what it receives."""

    accept = False
    received: list[float] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Partner.received.append(time.monotonic())
        self.send_response(200 if Partner.accept else 500)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_admin_replays_a_failing_outgoing_delivery(browser: Browser, demo: Demo):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Partner)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        partner = demo.api("acme-partner", "partner")
        sub = partner.post(
            "/notify/v1/subscriptions",
            json={"url": f"http://127.0.0.1:{server.server_port}/hook", "event_types": ["budget.commitment.*"]},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        assert sub.status_code == 201, sub.text
        sub_id = sub.json()["id"]
        ask(demo, "maria", ("marketer",), "EMEA-SEARCH", amount="10500.00")  # a budget.commitment.* event

        def failing_long_enough():  # the next automatic attempt at least 12 s away
            items = partner.get(f"/notify/v1/subscriptions/{sub_id}/deliveries").json()["items"]
            late = [
                d
                for d in items
                if d["last_error"] is not None
                and dt.datetime.fromisoformat(d["next_attempt_at"]) > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=12)
            ]
            return late[0] if late else None

        delivery = wait_until(failing_long_enough, timeout=90)
        page = sign_in(browser, demo, "root", ["admin"])
        page.goto(f"{demo.url}/admin")
        row = page.locator(f"table.outgoing tr[data-delivery='{delivery['id']}']")
        assert row.count() == 1, page.inner_text("main")[-3000:]
        assert "failing" in row.inner_text()
        check_page(page, "admin-outgoing")
        Partner.accept = True
        clicked = time.monotonic()
        row.locator("button").click()
        assert "queued again" in page.inner_text("main")

        def delivered():
            items = partner.get(f"/notify/v1/subscriptions/{sub_id}/deliveries").json()["items"]
            return next((d for d in items if d["id"] == delivery["id"] and d["status"] == "delivered"), None)

        wait_until(delivered, timeout=10)
        # Sooner than its backoff would have sent it: the replay did.
        assert any(t >= clicked for t in Partner.received) and time.monotonic() - clicked < 12
    finally:
        server.shutdown()
