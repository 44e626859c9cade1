"""Page plumbing: who is signed in, their API, CSRF, rendering, flashes and the error page.

Routers stay thin: `page: Page = Depends(signed_in)` gives the person, an `Api` with their
token, `page.may(...)` (what the gateway's policy would let their roles do, for hiding
actions only), `await page.form()` (CSRF checked) and `page.render(...)`.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from console import formatting
from console.api import Api, ApiProblem, Timing
from console.settings import Settings
from gateway.policy import Policy

ROW_FIELD = re.compile(r"^rows\[(\d+)\]\.(.+)$")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))
SERVICE_OF_PATH = ("budget", "workflow", "kpi", "registry", "gateway")
# The menu: each entry shown only to roles the gateway's policy lets read what the page is built from.
MENU = (
    ("/plans", "Budget", ("budget", "GET", "/v1/plans")),
    ("/approvals", "Approvals", ("workflow", "GET", "/v1/tasks")),
    ("/kpis", "KPIs", ("kpi", "GET", "/v1/scorecard")),
    ("/stack", "Stack", ("registry", "GET", "/v1/tools")),
    ("/admin", "Admin", ("gateway", "GET", "/v1/api-keys")),
)


@dataclass
class Person:
    sub: str
    roles: list[str]
    scopes: list[str]
    token: str
    expires: float
    via: str  # "development" or "oidc"
    tz: str = "UTC"
    name: str | None = None

    @property
    def display(self) -> str:
        return self.name or self.sub


class SignInNeeded(Exception):
    def __init__(self, next_url: str):
        self.next_url = next_url


class Refused(Exception):
    """Refused by the console itself (a forged or stale form): shown as a 403 page."""

    def __init__(self, detail: str, status: int = 403):
        self.detail = detail
        self.status = status


@dataclass
class Page:
    request: Request
    settings: Settings
    person: Person | None
    api: Api
    locale: str
    timing: Timing = field(default_factory=Timing)

    # ------------------------------------------------------------- permissions (hiding only)
    def may(self, service: str, method: str, path: str) -> bool:
        if self.person is None:
            return False
        policy: Policy = self.request.app.state.policy
        return policy.allows(frozenset(self.person.roles), service, method, path)

    def may_read(self, api_path: str) -> bool:
        """Whether the policy lets this person's roles GET an API path such as `/kpi/v1/quality`: a
        page section built on a call the roles may not make is left out, as the menu leaves out pages."""
        service, _, rest = api_path.lstrip("/").partition("/")
        return self.may(service, "GET", "/" + rest.split("?", 1)[0])

    def menu(self) -> list[tuple[str, str]]:
        """The pages this person's roles may use (hiding only: each page's API calls are still checked)."""
        return [(href, label) for href, label, (service, method, path) in MENU if self.may(service, method, path)]

    def require(self, service: str, method: str, path: str, what: str) -> None:
        """Refuse (403) a page the person's roles may not use, in plain words, before calling the API."""
        if not self.may(service, method, path):
            roles = ", ".join(self.person.roles) if self.person else "none"
            raise Refused(f"{what} Your roles ({roles}) do not include it; ask an administrator if you need it.")

    # ------------------------------------------------------------- forms
    async def form(self) -> FormData:
        """The posted form, refused unless it carries this session's CSRF token."""
        form = await self.request.form()
        check_csrf(self.request, str(form.get("csrf", "")))
        return form

    def flash(self, kind: str, text: str, problem: ApiProblem | None = None, why: str | None = None) -> None:
        """A message for the next page; `why` replaces the generic advice with the rule in plain words."""
        entry: dict[str, Any] = {"kind": kind, "text": text}
        if problem is not None:
            entry["problem"] = explain(problem)
            if why:
                entry["problem"]["what_to_do"] = why
        self.request.session.setdefault("flash", []).append(entry)

    def back(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    # ------------------------------------------------------------- rendering
    def money(self, value: object, currency: str | None) -> str:
        return formatting.money(value, currency, self.locale)

    def number(self, value: object) -> str:
        """Counts without decimals, other figures with up to two."""
        amount = formatting.decimal(value)
        digits = 0 if amount is not None and amount == amount.to_integral_value() else 2
        return formatting.number(value, self.locale, digits)

    def percent(self, share: object) -> str:
        return formatting.percent(share, self.locale)

    def when(self, value: str | None) -> str:
        return formatting.when(value, self.person.tz if self.person else self.settings.default_timezone, self.locale)

    def render(self, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        flashes = self.request.session.pop("flash", [])
        return TEMPLATES.TemplateResponse(
            self.request,
            template,
            {"page": self, "person": self.person, "csrf": csrf_token(self.request), "flashes": flashes, **ctx},
            status_code=status,
        )


# ----------------------------------------------------------------- session and CSRF


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def check_csrf(request: Request, sent: str) -> None:
    expected = request.session.get("csrf")
    header = request.headers.get("x-csrf-token", "")
    if not expected or not (secrets.compare_digest(sent, expected) or secrets.compare_digest(header, expected)):
        raise Refused(
            "This form did not come from your current console session (it was forged, or your session "
            "ended since the page was loaded). Nothing was changed. Reload the page and try again."
        )


def current_person(request: Request) -> Person | None:
    raw = request.session.get("person")
    if not raw:
        return None
    try:
        person = Person(**raw)
    except TypeError:
        request.session.pop("person", None)
        return None
    if person.expires <= time.time():
        request.session.pop("person", None)
        return None
    return person


def remember(request: Request, person: Person) -> None:
    request.session.clear()  # a new sign-in starts a new session (and a new CSRF token)
    request.session["person"] = asdict(person)
    csrf_token(request)


def _page(request: Request, person: Person | None) -> Page:
    settings: Settings = request.app.state.settings
    client: httpx.AsyncClient = request.app.state.http
    locale = formatting.negotiate_locale(request.headers.get("accept-language"), settings.default_locale)
    timing = Timing()
    request.state.timing = timing
    return Page(request, settings, person, Api(client, person.token if person else None, timing), locale, timing)


async def signed_in(request: Request) -> Page:
    person = current_person(request)
    if person is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInNeeded(target)
    return _page(request, person)


async def anyone(request: Request) -> Page:
    return _page(request, current_person(request))


# ----------------------------------------------------------------- errors in plain words

WHAT_TO_DO = {
    400: "Check what you entered and send it again.",
    401: "Your sign-in is no longer valid. Sign in again.",
    403: "Your role or your scopes do not allow this. Ask an administrator if you need it.",
    404: "It may have been removed, or the link is wrong. Go back and choose again.",
    409: "Someone changed it at the same time, or its state does not allow this now. Reload and try again.",
    412: "It changed since you loaded the page. Reload and try again.",
    413: "What you sent is too large. Send a smaller file.",
    415: "The file type is not accepted. Send a CSV file.",
    422: "Some fields are not right; they are listed below. Correct them and send again.",
    429: "Too many requests in a short time. Wait a moment and try again.",
    503: "That part of Pitcrew is unavailable right now; the rest still works. Try again in a moment.",
}


def explain(problem: ApiProblem) -> dict[str, Any]:
    fields = []
    for err in problem.errors:
        where = str(err.get("field") or ".".join(str(p) for p in err.get("loc", []) if p != "body") or "request")
        row = ROW_FIELD.match(where)  # a spreadsheet's rows[7].amount reads as "row 7, amount"
        where = f"row {row.group(1)}, {row.group(2)}" if row else where.removeprefix("query.").removeprefix("body.")
        fields.append({"field": where, "message": err.get("message") or err.get("msg") or ""})
    status = problem.status if problem.status in WHAT_TO_DO else (503 if problem.status >= 500 else 400)
    return {
        "status": problem.status,
        "title": problem.title,
        "detail": problem.detail,
        "fields": fields,
        "part": problem.part,
        "request_id": problem.request_id,
        "what_to_do": WHAT_TO_DO[status],
    }


def sign_in_redirect(next_url: str) -> RedirectResponse:
    return RedirectResponse(f"/signin?next={quote(next_url, safe='')}", status_code=303)
