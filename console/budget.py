"""Budget pages: the plan as a tree with its figures over a month range, grouping, a line's ledger
entries, and the actions the person's role allows (commitment, allocation, transfer, CSV import)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import UploadFile

from console.api import ApiProblem
from console.formatting import decimal
from console.web import Page, signed_in

router = APIRouter()
GROUPS = ("channel", "region", "campaign", "cost_center", "owner")
TOLERANCE = Decimal("0.10")  # the pacing tolerance the budget service uses for its summary


def pacing(balance: dict[str, Any], elapsed: Decimal) -> dict[str, Any]:
    """Time elapsed against money spent and consumed for one line (same rule as the API's summary)."""
    allocated = decimal(balance.get("allocated")) or Decimal(0)
    available = decimal(balance.get("available")) or Decimal(0)
    if allocated <= 0:
        spent_share = consumed_share = None
        status = "no_budget"
    else:
        spent_share = (decimal(balance.get("spent")) or Decimal(0)) / allocated
        consumed_share = (allocated - available) / allocated
        status = (
            "overspending"
            if spent_share > elapsed + TOLERANCE
            else "underspending"
            if spent_share < elapsed - TOLERANCE
            else "on_track"
        )
    threshold = (
        "over"
        if available < 0
        else "100%"
        if consumed_share is not None and consumed_share >= 1
        else "80%"
        if consumed_share is not None and consumed_share >= Decimal("0.8")
        else None
    )
    return {
        "elapsed": elapsed,
        "spent": spent_share,
        "consumed": consumed_share,
        "status": status,
        "threshold": threshold,
    }


def flatten(nodes: list[dict[str, Any]], out: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    out = [] if out is None else out
    for node in nodes:
        out.append(node)
        flatten(node.get("children", []), out)
    return out


async def _nothing() -> dict[str, Any]:
    return {"items": []}


@router.get("/plans")
async def plans(page: Page = Depends(signed_in)) -> Response:
    items = await page.api.items("/budget/v1/plans")
    if len([p for p in items if p["status"] == "active"]) == 1:
        only = next(p for p in items if p["status"] == "active")
        return RedirectResponse(f"/plans/{only['id']}", status_code=303)
    return page.render("plans.html", plans=items)


@router.get("/plans/{plan_id}")
async def plan(
    plan_id: str,
    page: Page = Depends(signed_in),
    start: str | None = None,
    end: str | None = None,
    group_by: str | None = None,
) -> Response:
    start, end = (start or None), (end or None)
    group_by = group_by if group_by in GROUPS else None
    # At once: the three answers do not depend on each other (no range given: the API's default, the same).
    info, tree, summary = await asyncio.gather(
        page.api.get(f"/budget/v1/plans/{plan_id}"),
        page.api.get(f"/budget/v1/plans/{plan_id}/lines", **{"from": start, "to": end}),
        page.api.get(f"/budget/v1/plans/{plan_id}/summary", group_by=group_by, **{"from": start, "to": end}),
    )
    elapsed = decimal(summary["total"]["pacing"]["elapsed_share"]) or Decimal(0)
    rows = flatten(tree["items"])
    for row in rows:
        row["pace"] = pacing(row["balance"], elapsed)
    return page.render(
        "plan.html",
        plan=info,
        tree=tree,
        rows=rows,
        summary=summary,
        total_pace=pacing(summary["total"], elapsed),
        group_by=group_by,
        groups=GROUPS,
        may_import=page.may("budget", "POST", f"/v1/plans/{plan_id}/import"),
        import_result=page.request.session.pop("import_result", None),
    )


@router.get("/plans/{plan_id}/export")
async def export(
    plan_id: str, page: Page = Depends(signed_in), start: str | None = None, end: str | None = None
) -> Response:
    r = await page.api.request(
        "GET", f"/budget/v1/plans/{plan_id}/export", params={k: v for k, v in {"from": start, "to": end}.items() if v}
    )
    return Response(
        r.content,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": r.headers.get("content-disposition", f'attachment; filename="plan-{plan_id}.csv"')
        },
    )


@router.post("/plans/{plan_id}/import")
async def import_csv(plan_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        page.flash("error", "Choose a CSV file to import.")
        return page.back(f"/plans/{plan_id}")
    content = await upload.read()
    try:
        r = await page.api.request(
            "POST",
            f"/budget/v1/plans/{plan_id}/import",
            content=content,
            headers={"Content-Type": "text/csv", "Idempotency-Key": str(form.get("idem") or uuid.uuid4())},
        )
    except ApiProblem as problem:
        page.flash(
            "error", f"Nothing was imported from {upload.filename}: every row with a problem is listed.", problem
        )
        return page.back(f"/plans/{plan_id}")
    page.request.session["import_result"] = {"file": upload.filename, **_import_counts(r.json())}
    page.flash("ok", f"{upload.filename} imported.")
    return page.back(f"/plans/{plan_id}")


def _import_counts(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        return {}
    return {k: v for k, v in body.items() if isinstance(v, (int, str)) and not isinstance(v, bool)}


@router.get("/lines/{line_id}")
async def line(
    line_id: str,
    page: Page = Depends(signed_in),
    start: str | None = None,
    end: str | None = None,
    cursor: str | None = None,
) -> Response:
    detail, balance, entries = await asyncio.gather(
        page.api.get(f"/budget/v1/lines/{line_id}"),
        page.api.get(f"/budget/v1/lines/{line_id}/balance", **{"from": start or None, "to": end or None}),
        page.api.get(f"/budget/v1/lines/{line_id}/entries", limit=100, cursor=cursor),
    )
    may_plan = page.may("budget", "POST", "/v1/allocations")
    plan_info, tree = await asyncio.gather(
        page.api.get(f"/budget/v1/plans/{detail['plan_id']}"),
        page.api.get(f"/budget/v1/plans/{detail['plan_id']}/lines") if may_plan else _nothing(),
    )
    siblings = [n for n in flatten(tree["items"]) if n["id"] != line_id] if may_plan else []
    return page.render(
        "line.html",
        line=detail,
        plan=plan_info,
        balance=balance,
        entries=entries,
        may_commit=page.may("budget", "POST", "/v1/commitments"),
        may_plan=may_plan,
        others=siblings,
        idem=uuid.uuid4().hex,
    )


def _money_body(form: Any, currency: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "period": str(form.get("period", "")).strip(),
        "amount": str(form.get("amount", "")).strip().replace(" ", ""),
        "currency": str(form.get("currency") or currency),
    }
    for key in ("memo", "external_ref", "vendor"):
        if str(form.get(key, "")).strip():
            body[key] = str(form.get(key)).strip()
    return body


async def _post(page: Page, line_id: str, path: str, body: dict[str, Any], idem: str, done: str) -> Response:
    try:
        result = await page.api.post(path, body, headers={"Idempotency-Key": idem or uuid.uuid4().hex})
    except ApiProblem as problem:
        page.flash("error", "Nothing was changed.", problem)
        return page.back(f"/lines/{line_id}")
    status = result.get("status") if isinstance(result, dict) else None
    page.flash("ok", done + (f" Status: {status.replace('_', ' ')}." if status else ""))
    return page.back(f"/lines/{line_id}")


@router.post("/lines/{line_id}/commit")
async def commit(line_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    body = {"line_id": line_id, **_money_body(form, str(form.get("plan_currency", "")))}
    return await _post(
        page, line_id, "/budget/v1/commitments", body, str(form.get("idem", "")), "Commitment requested."
    )


@router.post("/lines/{line_id}/allocate")
async def allocate(line_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    body = {"line_id": line_id, **_money_body(form, str(form.get("plan_currency", "")))}
    return await _post(page, line_id, "/budget/v1/allocations", body, str(form.get("idem", "")), "Allocation posted.")


@router.post("/lines/{line_id}/transfer")
async def transfer(line_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    body = {
        "from_line_id": line_id,
        "to_line_id": str(form.get("to_line_id", "")),
        **_money_body(form, str(form.get("plan_currency", ""))),
    }
    body.pop("external_ref", None)
    body.pop("vendor", None)
    return await _post(page, line_id, "/budget/v1/transfers", body, str(form.get("idem", "")), "Transfer posted.")
