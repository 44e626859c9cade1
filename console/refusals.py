"""The workflow's refusals of a decision, in plain words: the four-eyes rule and region scopes.

The workflow service answers 403 with a short technical detail ("Four eyes: ...", "Your scopes
(...) do not cover ..."); the person deciding gets the rule behind it and what to do instead.
"""

from __future__ import annotations

from typing import Any

from console.api import ApiProblem

FOUR_EYES = (
    "Pitcrew follows the four-eyes rule: whoever asks for money never decides on their own request, "
    "and cannot hand it to someone of their choosing either. {requester} made this request, so a second "
    "person with the approver role has to decide it."
)
FOUR_EYES_DELEGATE = (
    "You cannot hand this request to {to_user}: they made it, and under the four-eyes rule the person "
    "who asks never decides. Delegate to another approver."
)
SCOPES = (
    "Region scopes: you may decide only requests in the regions your sign-in covers ({yours}). This "
    "request is for {theirs}, so an approver whose scopes include {theirs} must decide it, even when it "
    "was handed to you. Ask one of them to decide it, or an administrator to widen your scopes."
)
NOT_ASSIGNED = (
    "This request is not assigned to you: not to you by name, nor to one of your roles within your region "
    "scopes. Only its approvers may decide it."
)
NOT_VISIBLE = (
    "Either the request does not exist, or it lies outside your region scopes ({yours}): approvers see "
    "and decide only requests in the regions their scopes name, unless one is handed to them by name."
)


def _region(context: dict[str, Any], scopes: list[str]) -> str:
    dims = sorted({s.split(":", 1)[0] for s in scopes if ":" in s}) or ["region"]
    found = [f"{d} {context[d]}" for d in dims if context.get(d)]
    return ", ".join(found) or "no region"


def plain(
    problem: ApiProblem,
    *,
    scopes: list[str],
    requester: str | None = None,
    context: dict[str, Any] | None = None,
    to_user: str | None = None,
) -> str | None:
    """The rule behind a refused decision or delegation, or None when it is not one of these."""
    detail = problem.detail.lower()
    fields = " ".join(str(e.get("field") or e.get("loc") or "") + str(e.get("message") or "") for e in problem.errors)
    if problem.status == 403 and detail.startswith("four eyes"):
        return FOUR_EYES.format(requester=requester or "Its requester")
    if problem.status == 422 and "to_user" in fields and "four eyes" in fields.lower():
        return FOUR_EYES_DELEGATE.format(to_user=to_user or "that person")
    if problem.status == 403 and "scopes" in detail and "do not cover" in detail:
        yours = ", ".join(scopes) or "none"
        return SCOPES.format(yours=yours, theirs=_region(context or {}, scopes))
    if problem.status == 403 and "not assigned to you" in detail:
        return NOT_ASSIGNED
    return None


def not_visible(scopes: list[str]) -> str:
    return NOT_VISIBLE.format(yours=", ".join(scopes) or "none")
