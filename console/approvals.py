"""Approvals: my inbox by SLA due time with business-time countdowns, a request in its context
(line, amount, what is left), history and decisions, and the decisions themselves."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from console.api import Api, ApiProblem
from console.web import Page, signed_in

router = APIRouter()
DECISIONS = {
    "approve": ("approve", "Approved."),
    "reject": ("reject", "Rejected."),
    "request-changes": ("request-changes", "Changes requested from the requester."),
}
INBOX_CONTEXT = 25  # requests shown with their context (one call each); the rest by subject only


def countdown(minutes: int | None) -> str:
    if minutes is None:
        return "no SLA"
    sign = "−" if minutes < 0 else ""
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours} h {rest} min" if hours else f"{sign}{rest} min"


async def _instance(api: Api, instance_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await api.get(f"/workflow/v1/instances/{instance_id}")
    except ApiProblem:
        return None
    return found


async def _report(api: Api) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await api.get("/workflow/v1/reports/sla")
    except ApiProblem:
        return None
    return found


async def _no_report() -> None:
    return None


@router.get("/approvals")
async def inbox(page: Page = Depends(signed_in), fragment: bool = False) -> Response:
    tasks, report = await asyncio.gather(
        page.api.items("/workflow/v1/tasks", limit=100, pages=5, assignee="me"),
        _report(page.api) if not fragment else _no_report(),
    )
    instances = await asyncio.gather(*(_instance(page.api, t["instance_id"]) for t in tasks[:INBOX_CONTEXT]))
    for task, inst in zip(tasks, instances, strict=False):
        task["context"] = (inst or {}).get("context") or {}
    for task in tasks:
        task["countdown"] = countdown(task.get("remaining_business_minutes"))
    return page.render("approvals_rows.html" if fragment else "approvals.html", tasks=tasks, report=report)


@router.get("/approvals/{task_id}")
async def task(task_id: str, page: Page = Depends(signed_in)) -> Response:
    found = await page.api.get(f"/workflow/v1/tasks/{task_id}")
    inst = await page.api.get(f"/workflow/v1/instances/{found['instance_id']}")
    context = inst.get("context") or {}
    balance = None
    if context.get("line_id"):
        try:
            period = context.get("period")
            balance = await page.api.get(
                f"/budget/v1/lines/{context['line_id']}/balance", **{"from": period, "to": period}
            )
        except ApiProblem:
            balance = None
    found["countdown"] = countdown(found.get("remaining_business_minutes"))
    may_decide = found["status"] == "open" and page.may("workflow", "POST", f"/v1/tasks/{task_id}/approve")
    return page.render(
        "task.html",
        task=found,
        instance=inst,
        context=context,
        balance=balance,
        may_decide=may_decide,
        may_comment=page.may("workflow", "POST", f"/v1/instances/{inst['id']}/comments"),
    )


@router.post("/approvals/{task_id}/decide")
async def decide(task_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    action = str(form.get("decision", ""))
    comment = str(form.get("comment", "")).strip() or None
    try:
        if action == "delegate":
            body: dict[str, Any] = {"to_user": str(form.get("to_user", "")).strip(), "comment": comment}
            await page.api.post(f"/workflow/v1/tasks/{task_id}/delegate", body)
            done = f"Delegated to {body['to_user']}."
        elif action in DECISIONS:
            path, done = DECISIONS[action]
            await page.api.post(f"/workflow/v1/tasks/{task_id}/{path}", {"comment": comment} if comment else {})
        else:
            page.flash("error", "Choose approve, reject, request changes or delegate.")
            return page.back(f"/approvals/{task_id}")
    except ApiProblem as problem:
        page.flash("error", "Your decision was not recorded.", problem)
        return page.back(f"/approvals/{task_id}")
    page.flash("ok", done)
    return page.back("/approvals")


@router.post("/approvals/{task_id}/comment")
async def comment(task_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    instance_id = str(form.get("instance_id", ""))
    try:
        await page.api.post(f"/workflow/v1/instances/{instance_id}/comments", {"comment": str(form.get("comment", ""))})
    except ApiProblem as problem:
        page.flash("error", "Your comment was not added.", problem)
    else:
        page.flash("ok", "Comment added.")
    return page.back(f"/approvals/{task_id}")
