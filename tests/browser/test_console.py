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
    # The inbox is the API's, in its order (SLA due first); the new request is on top of those due after it
    # (the demo's requests with a 1-minute SLA, due long ago, stay above it).
    inbox = approver_api.get("/workflow/v1/tasks").json()["items"]
    rows = approver.locator("#inbox tbody tr").all()
    assert [r.get_attribute("data-task") for r in rows] == [t["id"] for t in inbox]
    mine = next(t for t in inbox if t["subject"]["id"] == commitment)
    assert all(t["due_at"] <= mine["due_at"] for t in inbox[: inbox.index(mine)])
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


def _walk(nodes: list[dict]) -> list[dict]:
    out = []
    for node in nodes:
        out.append(node)
        out.extend(_walk(node["children"]))
    return out


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
        "kpis": "/kpis",
        "stack": "/stack",
        "admin-finance": "/admin",
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


def test_kpis_show_the_apis_figures_and_draw_the_chart_and_attribution_ranges(browser: Browser, demo: Demo):
    page = sign_in(browser, demo, "carla", ["analyst"])
    today = dt.date.today()
    period = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    page.goto(f"{demo.url}/kpis?period={period}&metric=spend&group_by=channel")
    api = demo.api("carla", "analyst")
    card = api.get("/kpi/v1/scorecard", params={"metrics": "spend,leads,cpl,revenue,roi", "period": period}).json()
    shown = {
        r.get_attribute("data-metric"): r.get_attribute("data-actual")
        for r in page.locator("#scorecard tbody tr").all()
    }
    assert shown == {i["metric"]: i["actual"] for i in card["items"]}
    assert page.locator("#metric-chart[data-drawn='1'] canvas").count() == 1
    # The month still running is drawn dashed (one dashed series per group) and marked in the table.
    month_ends_today = (today + dt.timedelta(days=1)).day == 1
    running = page.locator("#series-table th[data-partial]")
    if not month_ends_today:
        assert running.count() == 1 and (running.text_content() or "").startswith(today.strftime("%Y-%m-01"))
        groups = page.locator("#series-table tbody tr").count()
        assert page.locator("#metric-chart").get_attribute("data-dashed") == str(groups) != "0"
        note = page.inner_text("#partial-note")
        # Spend is a sum: the running month is drawn projected to the whole month, and says so.
        assert "Dashed" in note and "projected" in note and f"{today.day} of " in note
    definition = api.get("/kpi/v1/metrics/spend").json()
    assert page.locator("#definition [data-version]").inner_text() == str(definition["version"])
    first = page.locator("#series-table tbody tr").first.locator("td").first.get_attribute("data-value")
    series = api.get(
        "/kpi/v1/metrics/spend/series",
        params={
            "from": today.replace(month=1, day=1).isoformat(),
            "to": today.isoformat(),
            "grain": "month",
            "group_by": "channel",
        },
    ).json()
    assert first == series["series"][0]["points"][0]["value"]
    attribution = api.get(
        "/kpi/v1/attribution", params={"from": today.replace(month=1, day=1).isoformat(), "to": today.isoformat()}
    ).json()
    assert page.locator("#attribution svg .range-span").count() == len(attribution["credits"]) > 0
    # The data-quality view: rejections, duplicates, late data and new spellings, as the API counts them.
    quality = api.get("/kpi/v1/quality").json()
    assert figures(page, "#quality-counts") == {
        "rejected": str(quality["rejected"]["count"]),
        "duplicates": str(quality["duplicates_dropped"]["count"]),
        "late": str(quality["late_arrivals"]["count"]),
        "new_values": str(len(quality["new_dimension_values"])),
    }
    check_page(page, "kpis-analyst")


def test_the_stack_graph_renders_and_names_its_single_points_of_failure(browser: Browser, demo: Demo):
    page = sign_in(browser, demo, "otto", ["mops"])
    page.goto(f"{demo.url}/stack")
    api = demo.api("otto", "mops")
    analysis = api.get("/registry/v1/analysis").json()
    names = {t["id"]: t["name"] for t in api.get("/registry/v1/tools", params={"limit": 200}).json()["items"]}
    assert analysis["single_points_of_failure"]
    spofs = page.inner_text("#spofs")
    for tool in analysis["single_points_of_failure"]:
        assert names[tool] in spofs
    graph = api.get("/registry/v1/graph").json()
    page.wait_for_selector("#stack-graph[data-drawn]")
    assert page.locator("#stack-graph").get_attribute("data-drawn") == str(len(graph["nodes"]))
    check_page(page, "stack-mops")


def test_an_admin_issues_a_key_and_sees_its_secret_once(browser: Browser, demo: Demo):
    page = sign_in(browser, demo, "root", ["admin"])
    page.goto(f"{demo.url}/admin")
    page.click("summary:has-text('Issue a key')")
    page.fill("#k-name", "crm-sync")
    page.click("form[action='/admin/api-keys'] button[type=submit]")
    secret = page.inner_text("#new-key-secret")
    r = demo.api("x", "admin").get("/registry/v1/tools", headers={"Authorization": "", "X-API-Key": secret})
    assert r.status_code == 200, r.text
    check_page(page, "admin-new-key")
    page.goto(f"{demo.url}/admin")
    assert secret not in page.content() and "crm-sync" in page.inner_text("#api-keys")


def test_a_csv_import_with_bad_rows_lists_every_one_and_imports_nothing(browser: Browser, demo: Demo, tmp_path):
    page = sign_in(browser, demo, "olga", ["mops"])
    page.goto(f"{demo.url}/plans/{demo.ids['plan_id']}")
    api = demo.api("olga", "mops")
    codes = lambda: {n["code"] for n in _walk(api.get(f"/budget/v1/plans/{demo.ids['plan_id']}/lines").json()["items"])}  # noqa: E731
    before = codes()
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "code,parent_code,name,period,amount,currency\n"
        "NEW-1,,New line,2026-13,100.00,EUR\n"
        "NEW-2,,Another,2026-01,ten euros,EUR\n"
        "NEW-3,,Fine,2026-01,5.00,EUR\n"
    )
    page.set_input_files("#file", str(bad))
    page.click("form[action$='/import'] button[type=submit]")
    alert = page.inner_text(".flash-error")
    assert "Nothing was imported from bad.csv" in alert
    assert "row 2" in alert.lower() and "row 3" in alert.lower(), alert
    assert codes() == before and "NEW-3" not in before  # all or nothing: not even the good row
    check_page(page, "plan-import-refused")


def test_an_approver_of_another_region_is_told_why_not(browser: Browser, demo: Demo):
    api = demo.api("akira", "approver", scopes=("region:APAC",))
    emea = demo.api("erik", "approver", scopes=("region:EMEA",))

    def emea_only():
        theirs = {t["id"] for t in api.get("/workflow/v1/tasks").json()["items"]}
        return next((t for t in emea.get("/workflow/v1/tasks").json()["items"] if t["id"] not in theirs), None)

    task = wait_until(emea_only)  # a request only EMEA's approvers may decide
    page = sign_in(browser, demo, "akira", ["approver"], "region:APAC")
    response = page.goto(f"{demo.url}/approvals/{task['id']}")
    assert response is not None and response.status in (403, 404)
    text = page.inner_text("main")
    assert "scope" in text.lower() or "not found" in text.lower(), text
    assert "Traceback" not in page.content()
    check_page(page, "approval-refused")
