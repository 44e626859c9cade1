"""Browser tests: the real stack with the demo data, driven by Playwright in Debian's Chromium.

`make test-browser` runs them (`-m browser`); `make test` leaves them out. A missing browser
is a failure, never a skip: the Makefile installs `chromium` with apt-get before running.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from gateway.devtokens import mint_dev_token
from gateway.settings import Settings as GatewaySettings
from pitcrew.demo import load_demo
from pitcrew.launcher import Stack, free_port, start_stack
from pitcrew.topology import PROCESSES, ROOT
from tests.conftest import NatsServer

CHROMIUM = os.environ.get("PITCREW_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "var" / "screenshots"
WIDTHS = {"phone": (375, 812), "desktop": (1366, 900)}

pytestmark = pytest.mark.browser
# The first browser test also starts the stack, loads the demo data and waits for it to settle (its
# setup counts towards its timeout): a 2-core machine shared with other work took over 240 s for that.
BROWSER_TIMEOUT_SECONDS = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("browser") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(BROWSER_TIMEOUT_SECONDS))


@dataclass
class Demo:
    stack: Stack
    url: str
    ids: dict[str, Any]

    def api(self, sub: str, *roles: str, scopes: tuple[str, ...] = ()) -> httpx.Client:
        token = mint_dev_token(GatewaySettings(), sub, roles, scopes, ttl=3600)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if not found:
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test-browser` (it installs the chromium package)")
    return found


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    nats = NatsServer(tmp_path_factory.mktemp("nats"))
    nats.start()
    var = tmp_path_factory.mktemp("stack")
    env = dict(os.environ)
    env.update({f"PITCREW_{name.upper()}_PORT": str(free_port()) for name in PROCESSES})
    env["PITCREW_VAR_DIR"] = str(var)
    env["PITCREW_NOTIFY_ALLOW_PRIVATE_URLS"] = "true"  # the admin test's partner endpoint listens on 127.0.0.1
    env.pop("PITCREW_ENVIRONMENT", None)
    try:
        stack, urls, _ = start_stack(
            var_dir=Path(var), env=env, nats_url=nats.url, echo=lambda *_: None, ready_timeout=180
        )
        try:
            token = mint_dev_token(GatewaySettings(), "dev-admin", ["admin"], (), ttl=3600)
            ids = load_demo(urls["gateway"], token, echo=lambda *_: None)
            demo = Demo(stack, urls["gateway"], ids)
            settle(demo)
            yield demo
        finally:
            stack.stop()
    finally:
        nats.stop()


def settle(demo: Demo, timeout: float = 180.0) -> None:
    """Wait until the demo's webhooks are all forwarded and the KPI figures stop moving, so a page and
    the API read the same numbers (the ERP deliveries and the events behind them arrive after load_demo)."""
    api = demo.api("dev-admin", "admin")
    deadline = time.monotonic() + timeout
    while api.get("/gateway/v1/webhook-deliveries", params={"status": "pending", "limit": 1}).json()["items"]:
        assert time.monotonic() < deadline, "webhook deliveries still pending"
        time.sleep(1)
    year = dt.date.today().replace(month=1, day=1).isoformat()
    params = {"from": year, "to": dt.date.today().isoformat(), "grain": "month"}
    last, same = None, 0
    while same < 3:
        assert time.monotonic() < deadline, "KPI figures still moving"
        now = api.get("/kpi/v1/metrics/spend/series", params=params).json()
        same = same + 1 if now == last else 0
        last = now
        time.sleep(1)


@pytest.fixture(scope="session")
def browser(chromium_path: str, demo: Demo) -> Iterator[Browser]:
    """Started after the stack: Playwright's sync API runs an event loop, and the stack's migrations run their own."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


def sign_in(
    browser: Browser, demo: Demo, user: str, roles: list[str], scopes: str = "", width: str = "desktop"
) -> Page:
    """A fresh browser context signed in through the development sign-in form, as a person would."""
    w, h = WIDTHS[width]
    context: BrowserContext = browser.new_context(viewport={"width": w, "height": h}, locale="en-GB")
    page = context.new_page()
    page.goto(f"{demo.url}/signin")
    page.fill("#user", user)
    for box in page.locator("input[name=role]").all():
        if box.get_attribute("value") in roles:
            box.check()
        else:
            box.uncheck()
    page.fill("#scopes", scopes)
    page.select_option("#tz", "Europe/Berlin")
    page.click("form[action='/signin/dev'] button[type=submit]")
    page.wait_for_load_state()
    assert "/signin" not in page.url, page.content()[:2000]
    return page


def check_page(page: Page, name: str) -> None:
    """Axe: no serious or critical violation; a screenshot at phone and desktop widths."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    results = Axe().run(page)
    bad = [
        (v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{name}: accessibility violations {json.dumps(bad, indent=1)}"
    size = page.viewport_size or {"width": 1366, "height": 900}
    for label, (w, h) in WIDTHS.items():
        page.set_viewport_size({"width": w, "height": h})
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        assert wide <= w, f"{name}: the page is {wide} px wide at {w} px; a wide table must scroll in its own frame"
        # Generous: on a loaded 2-core machine a long page at 375 px takes a while to paint in full.
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"), full_page=True, timeout=120_000)
    page.set_viewport_size(size)


def figures(page: Page, container: str) -> dict[str, str]:
    return {
        el.get_attribute("data-figure") or "": el.get_attribute("data-value") or ""
        for el in page.locator(f"{container} [data-figure]").all()
    }


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
