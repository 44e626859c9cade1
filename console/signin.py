"""Signing in and out: the development sign-in (act as a chosen user, roles and scopes) and sign-out.

The development sign-in mints the same HS256 token `pitcrew token` prints (gateway.devtokens); it
is refused when PITCREW_ENVIRONMENT=production, where only the OIDC sign-in (console.oidc) works.
"""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from console.web import Page, Person, Refused, anyone, remember
from gateway.devtokens import mint_dev_token
from gateway.settings import Settings as GatewaySettings
from shared.identity import ROLES

router = APIRouter()

TIMEZONES = (
    "Europe/Berlin",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Australia/Sydney",
    "UTC",
)
SUBJECT = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")
SCOPE = re.compile(r"^[a-z_]+:[A-Za-z0-9._-]+$")


def safe_next(value: object) -> str:
    """Only a path on this site (never //host or a full URL): no open redirect after sign-in."""
    text = str(value or "/")
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


@router.get("/")
async def home(page: Page = Depends(anyone)) -> Response:
    if page.person is None:
        return RedirectResponse("/signin", status_code=303)
    first = "/approvals" if {"approver", "finance"} & set(page.person.roles) else "/plans"
    return RedirectResponse(first, status_code=303)


@router.get("/signin")
async def signin_form(next: str = "/", page: Page = Depends(anyone)) -> Response:
    return page.render(
        "signin.html",
        next=safe_next(next),
        roles=ROLES,
        timezones=TIMEZONES,
        dev=page.settings.dev_signin,
        oidc=bool(page.settings.oidc_issuer),
    )


@router.post("/signin/dev")
async def signin_dev(page: Page = Depends(anyone)) -> Response:
    if not page.settings.dev_signin:
        raise Refused(
            "The development sign-in is switched off in production. Sign in with your organisation's account."
        )
    form = await page.form()
    user = str(form.get("user", "")).strip()
    roles = [str(r) for r in form.getlist("role")]
    scopes = [s for s in re.split(r"[\s,]+", str(form.get("scopes", ""))) if s]
    tz = str(form.get("tz", "UTC"))
    problems = []
    if not SUBJECT.match(user):
        problems.append("User: letters, digits and . _ @ - only, up to 100 characters.")
    if not roles or any(r not in ROLES for r in roles):
        problems.append(f"Role: choose at least one of {', '.join(ROLES)}.")
    if any(not SCOPE.match(s) for s in scopes):
        problems.append("Scopes: each like region:EMEA, separated by spaces or commas.")
    if tz not in TIMEZONES:
        problems.append("Time zone: choose one from the list.")
    if problems:
        page.flash("error", " ".join(problems))
        return page.back(f"/signin?next={quote(safe_next(form.get('next')), safe='')}")
    ttl = page.settings.session_max_age_seconds
    token = mint_dev_token(GatewaySettings(), user, roles, scopes, ttl=ttl)
    remember(page.request, Person(user, sorted(roles), scopes, token, time.time() + ttl - 60, "development", tz))
    return page.back(safe_next(form.get("next")))


@router.post("/signout")
async def signout(page: Page = Depends(anyone)) -> Response:
    await page.form()
    page.request.session.clear()
    return page.back("/signin")
