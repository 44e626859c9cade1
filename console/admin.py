"""Admin: API keys (the secret shown once, in the answer to the form, never stored by the console)
and webhook deliveries (the rejected and dead ones first)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from console.api import ApiProblem
from console.web import Page, signed_in
from shared.identity import ROLES

router = APIRouter()
ADMIN_ONLY = "The admin pages (API keys, webhook deliveries) are for administrators."
STATUSES = ("", "rejected", "dead", "pending", "delivered")


OUTGOING_SUBSCRIPTIONS = 20  # partner subscriptions whose deliveries the page lists (one call each)


async def _outgoing(page: Page) -> list[dict[str, Any]]:
    """Partner webhook subscriptions (notify) with their deliveries not (yet) delivered: failing,
    failed or dead ones first, each with a replay button (the API's redeliver)."""
    subs: list[dict[str, Any]] = (await page.api.get("/notify/v1/subscriptions", limit=OUTGOING_SUBSCRIPTIONS))["items"]
    pages = await asyncio.gather(
        *(page.api.get(f"/notify/v1/subscriptions/{s['id']}/deliveries", limit=50) for s in subs)
    )
    for sub, found in zip(subs, pages, strict=True):
        sub["undelivered"] = [
            d for d in found["items"] if d["status"] != "delivered" and (d["status"] != "pending" or d["attempts"])
        ]
    return subs


async def _listing(page: Page, status: str) -> dict[str, Any]:
    out: dict[str, Any] = {"keys": None, "deliveries": None, "outgoing": None, "problems": []}
    found = await asyncio.gather(
        page.api.get("/gateway/v1/api-keys", limit=100),
        page.api.get("/gateway/v1/webhook-deliveries", limit=50, status=status or None),
        _outgoing(page),
        return_exceptions=True,
    )
    for name, answer in zip(("keys", "deliveries", "outgoing"), found, strict=True):
        if isinstance(answer, ApiProblem):
            out["problems"].append(answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            out[name] = answer if name == "outgoing" else answer["items"]
    return out


@router.get("/admin")
async def admin(page: Page = Depends(signed_in), status: str = "") -> Response:
    page.require("gateway", "GET", "/v1/api-keys", ADMIN_ONLY)
    status = status if status in STATUSES else ""
    return page.render(
        "admin.html",
        **await _listing(page, status),
        shown=status,
        statuses=STATUSES,
        roles=ROLES,
        created=None,
        may_keys=page.may("gateway", "POST", "/v1/api-keys"),
    )


@router.post("/admin/api-keys")
async def create_key(page: Page = Depends(signed_in)) -> Response:
    page.require("gateway", "POST", "/v1/api-keys", ADMIN_ONLY)
    form = await page.form()
    body: dict[str, Any] = {
        "name": str(form.get("name", "")).strip(),
        "roles": [str(r) for r in form.getlist("role")],
        "scopes": [s for s in re.split(r"[\s,]+", str(form.get("scopes", ""))) if s],
    }
    if str(form.get("expires_at", "")).strip():
        body["expires_at"] = str(form.get("expires_at")).strip()
    try:
        created = await page.api.post("/gateway/v1/api-keys", body)
    except ApiProblem as problem:
        page.flash("error", "No key was issued.", problem)
        return page.back("/admin")
    # The secret is in this answer only: rendered here, never put in the session or a redirect.
    return page.render(
        "admin.html",
        **await _listing(page, ""),
        shown="",
        statuses=STATUSES,
        roles=ROLES,
        created=created,
        may_keys=True,
    )


@router.post("/admin/api-keys/{key_id}/revoke")
async def revoke_key(key_id: str, page: Page = Depends(signed_in)) -> Response:
    await page.form()
    try:
        await page.api.request("DELETE", f"/gateway/v1/api-keys/{key_id}")
    except ApiProblem as problem:
        page.flash("error", "The key was not revoked.", problem)
    else:
        page.flash("ok", "Key revoked: it is refused from its next request.")
    return page.back("/admin")


@router.post("/admin/webhooks/{subscription_id}/replay")
async def replay(subscription_id: str, page: Page = Depends(signed_in)) -> Response:
    """Send one outgoing delivery again (notify's redeliver; a disabled subscription is enabled again)."""
    page.require("gateway", "GET", "/v1/api-keys", ADMIN_ONLY)
    form = await page.form()
    body = {"delivery_id": str(form.get("delivery_id", ""))}
    try:
        await page.api.post(f"/notify/v1/subscriptions/{subscription_id}/redeliver", body)
    except ApiProblem as problem:
        page.flash("error", "The delivery was not replayed.", problem)
    else:
        page.flash("ok", "Delivery queued again: it is sent on the next pass.")
    return page.back("/admin#outgoing")
