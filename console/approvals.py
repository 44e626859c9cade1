"""Approvals: my inbox by SLA due time with live business-time countdowns, a request in its context
(line, amount, what is left), history and decisions, and the actions on it: approve, reject, request
changes, delegate and comment, with the workflow's refusals (four eyes, region scopes) in plain words."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from console import countdown, refusals
from console.api import Api, ApiProblem
from console.web import Page, signed_in

router = APIRouter()
DECISIONS = {
    "approve": ("approve", "Approved."),
    "reject": ("reject", "Rejected."),
    "request-changes": ("request-changes", "Changes requested: the request went back to its requester."),
}
INBOX_CONTEXT = 25  # requests shown with their context (one call each); the rest by subject only


async def _instance(api: Api, instance_id: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = await api.get(f"/workflow/v1/instances/{instance_id}")
    except ApiProblem:
        return None
    return found


async def _report(page: Page) -> dict[str, Any] | None:
    """The SLA report; None (the section is left out) when the roles may not read it or it is unavailable."""
    if not page.may_read("/workflow/v1/reports/sla"):
        return None
    try:
        found: dict[str, Any] = await page.api.get("/workflow/v1/reports/sla")
    except ApiProblem:
        return None
    return found


async def _no_report() -> None:
    return None


@router.get("/approvals")
async def inbox(page: Page = Depends(signed_in), fragment: bool = False) -> Response:
    tasks, report = await asyncio.gather(
        page.api.items("/workflow/v1/tasks", limit=100, pages=5, assignee="me"),
        _report(page) if not fragment else _no_report(),
    )
    instances = await asyncio.gather(*(_instance(page.api, t["instance_id"]) for t in tasks[:INBOX_CONTEXT]))
    for task, inst in zip(tasks, instances, strict=False):
        task["context"] = (inst or {}).get("context") or {}
    await countdown.clocks(page.request, page.api, tasks)
    return page.render("approvals_rows.html" if fragment else "approvals.html", tasks=tasks, report=report)


@router.get("/approvals/{task_id}")
async def task(task_id: str, page: Page = Depends(signed_in)) -> Response:
    try:
        found = await page.api.get(f"/workflow/v1/tasks/{task_id}")
    except ApiProblem as problem:
        if problem.status in (403, 404):  # say why a request may be out of sight
            problem.detail = f"{problem.detail} {refusals.not_visible(page.person.scopes if page.person else [])}"
        raise
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
    await countdown.clocks(page.request, page.api, [found])
    may_decide = found["status"] == "open" and page.may("workflow", "POST", f"/v1/tasks/{task_id}/approve")
    me = page.person.sub if page.person else ""
    return page.render(
        "task.html",
        task=found,
        instance=inst,
        context=context,
        balance=balance,
        may_decide=may_decide,
        own_request=me == inst.get("requester"),
        may_comment=page.may("workflow", "POST", f"/v1/instances/{inst['id']}/comments"),
    )


async def _why(page: Page, task_id: str, problem: ApiProblem, to_user: str | None = None) -> str | None:
    """The refusal's rule in plain words, with the request's requester and region when they can be read."""
    requester: str | None = None
    context: dict[str, Any] = {}
    try:
        found = await page.api.get(f"/workflow/v1/tasks/{task_id}")
        inst = await page.api.get(f"/workflow/v1/instances/{found['instance_id']}")
        requester, context = inst.get("requester"), inst.get("context") or {}
    except ApiProblem:
        pass
    scopes = page.person.scopes if page.person else []
    return refusals.plain(problem, scopes=scopes, requester=requester, context=context, to_user=to_user)


@router.post("/approvals/{task_id}/decide")
async def decide(task_id: str, page: Page = Depends(signed_in)) -> Response:
    form = await page.form()
    action = str(form.get("decision", ""))
    comment = str(form.get("comment", "")).strip() or None
    if action not in DECISIONS:
        page.flash("error", "Choose approve, reject or request changes.")
        return page.back(f"/approvals/{task_id}")
    path, done = DECISIONS[action]
    try:
        await page.api.post(f"/workflow/v1/tasks/{task_id}/{path}", {"comment": comment} if comment else {})
    except ApiProblem as problem:
        page.flash("error", "Your decision was not recorded.", problem, await _why(page, task_id, problem))
        return page.back(f"/approvals/{task_id}")
    page.flash("ok", done)
    return page.back("/approvals")


@router.post("/approvals/{task_id}/delegate")
async def delegate(task_id: str, page: Page = Depends(signed_in)) -> Response:
    """Its own form: Enter in the name field sends a delegation, never the decision form's first button."""
    form = await page.form()
    to_user = str(form.get("to_user", "")).strip()
    body: dict[str, Any] = {"to_user": to_user}
    if str(form.get("comment", "")).strip():
        body["comment"] = str(form.get("comment")).strip()
    try:
        await page.api.post(f"/workflow/v1/tasks/{task_id}/delegate", body)
    except ApiProblem as problem:
        why = await _why(page, task_id, problem, to_user)
        page.flash("error", "The request was not delegated.", problem, why)
        return page.back(f"/approvals/{task_id}")
    page.flash("ok", f"Delegated to {to_user}: they may now decide it as well.")
    return page.back(f"/approvals/{task_id}")


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
