"""Approvals in a real browser: request changes, delegate, comment, and the refusals in plain words.

Each action is checked through the API afterwards (the workflow's own record), not by the page alone."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from playwright.sync_api import Browser

from tests.browser.conftest import Demo, check_page, sign_in
from tests.browser.test_console import line_by_code, wait_until

pytestmark = pytest.mark.browser


def ask(demo: Demo, requester: str, roles: tuple[str, ...], code: str, amount: str = "15000.00") -> dict:
    """A commitment above the approval threshold on `code`, requested through the API; its open task."""
    line = line_by_code(demo, code)
    month = dt.date.today().strftime("%Y-%m")
    admin = demo.api("dev-admin", "admin")
    top_up = {"line_id": line["id"], "period": month, "amount": "20000.00", "currency": "EUR", "memo": "test top-up"}
    r = admin.post("/budget/v1/allocations", json=top_up, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    memo = f"browser test {uuid.uuid4().hex[:8]}"
    body = {"line_id": line["id"], "period": month, "amount": amount, "currency": "EUR", "memo": memo}
    api = demo.api(requester, *roles, scopes=("region:EMEA",))
    r = api.post("/budget/v1/commitments", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code in (200, 201, 202) and r.json()["status"] == "pending_approval", r.text
    commitment = r.json()["id"]
    erik = demo.api("erik", "approver", scopes=("region:EMEA",))
    return wait_until(
        lambda: next(
            (t for t in erik.get("/workflow/v1/tasks").json()["items"] if t["subject"]["id"] == commitment), None
        )
    )


def history(demo: Demo, instance_id: str) -> list[dict]:
    return demo.api("dev-admin", "admin").get(f"/workflow/v1/instances/{instance_id}").json()["history"]


def task_now(demo: Demo, task_id: str) -> dict:
    return demo.api("dev-admin", "admin").get(f"/workflow/v1/tasks/{task_id}").json()


def test_an_approver_comments_delegates_with_enter_and_requests_changes(browser: Browser, demo: Demo):
    task = ask(demo, "maria", ("marketer",), "EMEA-SEARCH")
    page = sign_in(browser, demo, "erik", ["approver"], "region:EMEA")
    page.goto(f"{demo.url}/approvals/{task['id']}")
    assert page.locator(".countdown[data-clock]").count() == 1

    # Comment: recorded on the instance's history, by the signed-in person.
    page.fill("#new-comment", "Which agency runs this?")
    page.click("form[action$='/comment'] button[type=submit]")
    assert "Comment added." in page.inner_text("main")
    assert any(
        h["action"] == "commented" and h["actor"] == "erik" and h["comment"] == "Which agency runs this?"
        for h in history(demo, task["instance_id"])
    )

    # Delegate by pressing Enter in the name field: a delegation, not the decision form's Approve.
    page.fill("#to_user", "ebba")
    page.press("#to_user", "Enter")
    page.wait_for_load_state()
    assert "Delegated to ebba" in page.inner_text("main")
    now = task_now(demo, task["id"])
    assert now["status"] == "open" and now["approvals"] == [], now
    assert "ebba" in now["assignees"]["users"]
    delegated = [h for h in history(demo, task["instance_id"]) if h["action"] == "delegated"]
    assert len(delegated) == 1 and delegated[0]["actor"] == "erik"
    check_page(page, "approval-delegated")

    # Request changes: the task closes as changes_requested, the comment goes with it.
    page.fill("#comment", "Split it into two quarters")
    page.click("button[value=request-changes]")
    assert "Changes requested" in page.inner_text("main")
    assert task_now(demo, task["id"])["status"] == "changes_requested"
    last = [h for h in history(demo, task["instance_id"]) if h["action"] == "changes_requested"]
    assert last and last[-1]["actor"] == "erik" and last[-1]["comment"] == "Split it into two quarters"


def test_the_four_eyes_rule_and_region_scopes_are_explained_when_the_workflow_refuses(browser: Browser, demo: Demo):
    # A person who may both ask and approve asks for money, then tries to approve it themself.
    task = ask(demo, "petra", ("marketer", "approver"), "EMEA-SEARCH")
    page = sign_in(browser, demo, "petra", ["marketer", "approver"], "region:EMEA")
    page.goto(f"{demo.url}/approvals/{task['id']}")
    assert "four-eyes" in page.inner_text("#four-eyes-note")
    page.click("button[value=approve]")
    alert = page.inner_text(".flash-error")
    assert "Your decision was not recorded." in alert
    assert "four-eyes rule" in alert and "petra made this request" in alert, alert
    assert task_now(demo, task["id"])["status"] == "open"
    check_page(page, "approval-four-eyes")

    # The approver may not hand it back to its requester: the same rule, in the same words.
    page = sign_in(browser, demo, "erik", ["approver"], "region:EMEA")
    page.goto(f"{demo.url}/approvals/{task['id']}")
    page.fill("#to_user", "petra")
    page.click("#delegate-form button[type=submit]")
    alert = page.inner_text(".flash-error")
    assert "The request was not delegated." in alert and "four-eyes" in alert, alert
    assert "petra" not in task_now(demo, task["id"])["assignees"]["users"]

    # Handed to an approver of another region, who may see it but not decide it.
    page.fill("#to_user", "akira")
    page.click("#delegate-form button[type=submit]")
    assert "Delegated to akira" in page.inner_text("main")
    page = sign_in(browser, demo, "akira", ["approver"], "region:APAC")
    page.goto(f"{demo.url}/approvals/{task['id']}")
    page.click("button[value=approve]")
    alert = page.inner_text(".flash-error")
    assert "Region scopes" in alert and "region:APAC" in alert and "region EMEA" in alert, alert
    now = task_now(demo, task["id"])
    assert now["status"] == "open" and now["approvals"] == []
    check_page(page, "approval-out-of-scope")


AMBER, RED = "rgb(255, 244, 214)", "rgb(253, 232, 231)"  # --warn-bg and --bad-bg of console.css


def test_the_countdown_ticks_in_business_time_and_turns_amber_then_red(browser: Browser, demo: Demo):
    task = ask(demo, "maria", ("marketer",), "EMEA-SEARCH", amount="11000.00")
    page = sign_in(browser, demo, "erik", ["approver"], "region:EMEA")
    page.clock.install()  # the page's clock, moved on by the test instead of waiting
    page.goto(f"{demo.url}/approvals")
    badge = page.locator(f"#inbox tr[data-task='{task['id']}'] .countdown")
    # The page's figure is the workflow's: the business minutes the API counts for the task.
    shown = badge.inner_text()
    api_minutes = task_now(demo, task["id"])["remaining_business_minutes"]
    assert shown in {f"{m // 60} h {m % 60} min" if m >= 60 else f"{m} min" for m in (api_minutes, api_minutes + 1)}
    # The SLA report per stage is the API's: attainment, with cycle times and breaches beside it.
    report = demo.api("erik", "approver", scopes=("region:EMEA",)).get("/workflow/v1/reports/sla").json()
    stages = {
        r.get_attribute("data-stage"): r.locator("[data-figure=attainment]").get_attribute("data-value")
        for r in page.locator("#sla-stages tbody tr").all()
    }
    assert stages == {s["stage"]: str(s["attainment_pct"]) for s in report["breaches_per_stage"]} != {}

    # A near-warning due time, injected on the request's page (the inbox reloads its rows every 30 s):
    # 2 business minutes left, and the calendar closes for a minute in between.
    page.goto(f"{demo.url}/approvals/{task['id']}")
    badge = page.locator("main .countdown")
    t0 = page.evaluate("() => Math.floor(Date.now() / 1000)")
    clock = {
        "at": t0,
        "left": 120,
        "warn": t0 + 120,
        "due": t0 + 180,
        "open": [[t0 - 10, t0 + 30], [t0 + 90, t0 + 3600]],
    }
    badge.evaluate("(el, c) => el.setAttribute('data-clock', JSON.stringify(c))", clock)
    page.clock.run_for(1000)
    assert badge.get_attribute("data-state") == "on_track" and badge.inner_text() == "1 min"

    page.clock.run_for(88_000)  # t0 + 89: closed since t0 + 30, so still 90 s left
    assert badge.get_attribute("data-state") == "on_track" and badge.inner_text() == "1 min"
    page.clock.run_for(36_000)  # t0 + 125: past the warning, 55 business seconds left
    assert badge.get_attribute("data-state") == "warning" and badge.inner_text() == "0 min"
    assert badge.evaluate("el => getComputedStyle(el).backgroundColor") == AMBER
    assert "nearly due" in page.locator("main .sla-spoken").inner_text()
    page.clock.run_for(125_000)  # t0 + 250: breached 70 business seconds ago
    assert badge.get_attribute("data-state") == "breached" and badge.inner_text() == "−1 min"
    assert badge.evaluate("el => getComputedStyle(el).backgroundColor") == RED
    check_page(page, "approval-countdown-breached")
