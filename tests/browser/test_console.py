"""The console in a real browser against the real stack with the demo data."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import Demo, check_page, figures, sign_in

pytestmark = pytest.mark.browser


def line_by_code(demo: Demo, code: str) -> dict:
    api = demo.api("dev-admin", "admin")
    stack = list(api.get(f"/budget/v1/plans/{demo.ids['plan_id']}/lines").json()["items"])
    while stack:
        node = stack.pop()
        if node["code"] == code:
            return node
        stack.extend(node["children"])
    raise AssertionError(code)


def wait_until(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError("condition not met in time")


def test_marketer_asks_approver_approves_and_the_budget_shows_it_committed(browser: Browser, demo: Demo):
    line = line_by_code(demo, "APAC-SEARCH")
    month = dt.date.today().strftime("%Y-%m")

    # A planner tops the line up through the console (the allocate form).
    planner = sign_in(browser, demo, "olga", ["mops"])
    planner.goto(f"{demo.url}/lines/{line['id']}")
    planner.click("summary:has-text('Allocate')")
    planner.select_option("#a-period", month)
    planner.fill("#a-amount", "30000.00")
    planner.click("form[action$='/allocate'] button[type=submit]")
    assert "Allocation posted." in planner.inner_text("main")

    # The marketer requests money above the approval threshold.
    marketer = sign_in(browser, demo, "mei", ["marketer"], "region:APAC")
    marketer.goto(f"{demo.url}/lines/{line['id']}")
    check_page(marketer, "line-marketer")
    marketer.select_option("#c-period", month)
    marketer.fill("#c-amount", "25000.00")
    marketer.fill("#c-memo", "Search burst for the APAC launch")
    marketer.click("form[action$='/commit'] button[type=submit]")
    assert "Status: pending approval." in marketer.inner_text("main")
    api = demo.api("mei", "marketer", scopes=("region:APAC",))
    assert figures(marketer, "#line-balance") == _figures(api.get(f"/budget/v1/lines/{line['id']}/balance").json())
    entries = api.get(f"/budget/v1/lines/{line['id']}/entries", params={"limit": 200}).json()["items"]
    commitment = next(e["commitment_id"] for e in reversed(entries) if e["memo"] == "Search burst for the APAC launch")

    # The approver finds it at the top of the inbox, with its countdown, and approves.
    approver = sign_in(browser, demo, "akira", ["approver"], "region:APAC")
    approver_api = demo.api("akira", "approver", scopes=("region:APAC",))
    wait_until(lambda: approver_api.get("/workflow/v1/tasks").json()["items"])
    approver.goto(f"{demo.url}/approvals")
    # The inbox is the API's, in its order (SLA due first); the new request is on top of those not yet due
    # before it (the demo's social requests breached their 1-minute SLA long ago and stay above it).
    inbox = approver_api.get("/workflow/v1/tasks").json()["items"]
    rows = approver.locator("#inbox tbody tr").all()
    assert [r.get_attribute("data-task") for r in rows] == [t["id"] for t in inbox]
    mine = next(t for t in inbox if t["subject"]["id"] == commitment)
    assert all(t["due_at"] <= mine["due_at"] for t in inbox[: inbox.index(mine)])
    assert all(t["sla_state"] == "breached" for t in inbox[: inbox.index(mine)])
    row = approver.locator(f"#inbox tbody tr[data-subject='{commitment}']")
    assert "min" in row.locator(".countdown").inner_text()
    check_page(approver, "approvals-inbox")
    row.locator("a").click()
    assert "APAC-SEARCH" in approver.inner_text("h1")
    check_page(approver, "approval-request")
    approver.fill("#comment", "Fits the launch plan")
    approver.click("button[value=approve]")
    assert "Approved." in approver.inner_text("main")

    # The marketer's budget shows it committed, and the page's numbers are the API's.
    def committed():
        return api.get(f"/budget/v1/commitments/{commitment}").json()["status"] == "committed"

    wait_until(committed)
    marketer.goto(f"{demo.url}/lines/{line['id']}")
    shown = figures(marketer, "#line-balance")
    assert shown == _figures(api.get(f"/budget/v1/lines/{line['id']}/balance").json())
    assert shown["pending"] == "0.00"
    marketer.goto(f"{demo.url}/plans/{demo.ids['plan_id']}")
    row = figures(marketer, f"tr[data-line='{line['code']}']")
    assert row == _figures(_tree_line(api, demo, line["code"]))


def _figures(balance: dict) -> dict[str, str]:
    return {k: balance[k] for k in ("allocated", "committed", "pending", "spent", "available")}


def _tree_line(api, demo: Demo, code: str) -> dict:
    stack = list(api.get(f"/budget/v1/plans/{demo.ids['plan_id']}/lines").json()["items"])
    while stack:
        node = stack.pop()
        if node["code"] == code:
            return node["balance"]
        stack.extend(node["children"])
    raise AssertionError(code)


def test_a_read_only_person_sees_no_write_action_and_forged_posts_are_refused(browser: Browser, demo: Demo):
    line = line_by_code(demo, "EMEA-SEARCH")
    analyst = sign_in(browser, demo, "ana", ["analyst"])
    for path in (f"/plans/{demo.ids['plan_id']}", f"/lines/{line['id']}", "/approvals"):
        analyst.goto(f"{demo.url}{path}")
        posts = [f.get_attribute("action") for f in analyst.locator("form[method=post]").all()]
        assert posts == ["/signout"], (path, posts)
    check_page(analyst, "approvals-analyst")
    # A forged form (no CSRF token) is refused by the console; nothing reaches the API.
    r = analyst.request.post(
        f"{demo.url}/lines/{line['id']}/commit", form={"period": "2026-01", "amount": "10.00"}, max_redirects=0
    )
    assert r.status == 403 and "Nothing was changed" in r.text()
    # With the right token the console forwards it, and the gateway refuses it (hiding is not the guard).
    token = analyst.locator("form[action='/signout'] input[name=csrf]").get_attribute("value")
    r = analyst.request.post(
        f"{demo.url}/lines/{line['id']}/commit",
        form={"csrf": token, "period": "2026-01", "amount": "10.00", "plan_currency": "EUR"},
    )
    assert r.ok and "Nothing was changed." in r.text() and "Forbidden" in r.text(), r.text()[-2000:]


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_is_accessible_and_drawn_at_phone_and_desktop_widths(browser: Browser, demo: Demo, width: str):
    line = line_by_code(demo, "EMEA-EVENTS-SUMMIT")
    page = sign_in(browser, demo, "fiona", ["finance"], width=width)
    pages = {
        "plan": f"/plans/{demo.ids['plan_id']}",
        "plan-by-channel": f"/plans/{demo.ids['plan_id']}?group_by=channel",
        "line": f"/lines/{line['id']}",
        "approvals-finance": "/approvals",
        "not-found": "/no/such/page",
    }
    for name, path in pages.items():
        page.goto(f"{demo.url}{path}")
        assert page.locator("h1").count() == 1, name
        if width == "desktop":
            check_page(page, name)
    page.context.clear_cookies()
    page.goto(f"{demo.url}/signin")
    check_page(page, "signin")
