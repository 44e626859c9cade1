"""Approve or reject from an e-mail: a signed, single-use, expiring link.

Opening the link (GET) only shows what would be decided and a button: mail scanners open links,
so a GET never decides. The button (POST) claims the link (used once, whoever comes second is told
so) and asks the workflow service to decide under the person's own identity (their directory roles
and scopes, minted as the gateway would), so four eyes, seats and scopes hold exactly as in the API.
If the workflow service cannot be reached the claim is released and the link works again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from sqlalchemy import update

from services.notify import people
from services.notify.links import Links
from services.notify.models import ActionLink, Notification, Person
from shared.db import utcnow
from shared.errors import NotFound
from shared.identity import HEADER, mint
from shared.uow import UnitOfWork

VERB = {"approve": "Approve", "reject": "Reject"}
DONE = {"approve": "Approved", "reject": "Rejected"}


@dataclass
class Page:
    heading: str
    lines: list[str] = field(default_factory=list)
    facts: list[list[str]] = field(default_factory=list)
    button: str | None = None
    status_code: int = 200


@dataclass(frozen=True)
class Decider:
    workflow_url: str
    identity_secret: str

    async def call(self, person: Person, link: ActionLink) -> tuple[int | None, str]:
        """The workflow service's answer (status, detail) to the person's decision; None when unreachable."""
        token = mint(people.principal_of(person), self.identity_secret, ttl_seconds=60)
        url = f"{self.workflow_url.rstrip('/')}/v1/tasks/{link.task_id}/{link.decision}"
        try:
            async with httpx.AsyncClient(timeout=15.0) as client:
                r = await client.post(url, json={"comment": "decided from an e-mail link"}, headers={HEADER: token})
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}"
        if r.is_success:
            return r.status_code, "done"
        try:
            detail = str(r.json().get("detail") or r.text)
        except ValueError:
            detail = r.text
        return r.status_code, detail[:500]


async def _load(uow: UnitOfWork, links: Links, token: str) -> tuple[ActionLink, Person, Notification | None]:
    link = await uow.get(ActionLink, links.action_id(token))
    if link is None:
        raise NotFound("This link is not one Pitcrew sent.")
    person = await people.get_person(uow, link.person_id)
    note = await uow.get(Notification, link.notification_id) if link.notification_id else None
    return link, person, note


def _refusal(link: ActionLink) -> Page | None:
    if link.used_at is not None:
        return Page(
            "This link was already used",
            [f"It was used on {link.used_at:%Y-%m-%d %H:%M} UTC: {link.outcome or ''}"],
            status_code=410,
        )
    if link.expires_at <= utcnow():
        return Page("This link has expired", ["Open the task in Pitcrew to decide it."], status_code=410)
    return None


async def confirmation(uow: UnitOfWork, links: Links, token: str) -> Page:
    """GET: what the button would do; nothing is decided."""
    link, person, note = await _load(uow, links, token)
    refused = _refusal(link)
    if refused is not None:
        return refused
    facts = [[str(a), str(b)] for a, b in (note.facts if note else [])]
    return Page(
        f"{VERB[link.decision]} {note.title if note else 'this task'}?",
        [f"You are {person.name} ({person.id}). Nothing has been decided yet: press the button to confirm."],
        facts,
        button=f"{VERB[link.decision]} now",
    )


async def claim(uow: UnitOfWork, links: Links, token: str) -> tuple[ActionLink, Person] | Page:
    """POST, first step: the link, used from now on (or the page saying why it cannot be)."""
    link, person, _ = await _load(uow, links, token)
    refused = _refusal(link)
    if refused is not None:
        return refused
    now = utcnow()
    result = await uow.execute(
        update(ActionLink)
        .where(ActionLink.id == link.id, ActionLink.used_at.is_(None))
        .values(used_at=now, outcome="deciding")
    )
    if getattr(result, "rowcount", 0) != 1:
        return Page("This link was already used", status_code=410)
    # Its sibling (approve <-> reject) is spent too: one decision per message.
    await uow.execute(
        update(ActionLink)
        .where(
            ActionLink.notification_id == link.notification_id, ActionLink.id != link.id, ActionLink.used_at.is_(None)
        )
        .values(used_at=now, outcome=f"the other link was used to {link.decision}")
    )
    return link, person


async def settle(uow: UnitOfWork, link_id: str, status: int | None, detail: str) -> Page:
    """POST, last step: record the workflow's answer; an unreachable workflow releases the claim."""
    link = await uow.get(ActionLink, link_id)
    assert link is not None
    if status is None or status >= 500:
        await uow.execute(
            update(ActionLink)
            .where(ActionLink.notification_id == link.notification_id)
            .values(used_at=None, outcome=None)
        )
        return Page(
            "Pitcrew could not decide it just now",
            ["Nothing was decided; try the link again in a moment."],
            status_code=503,
        )
    done = 200 <= status < 300
    link.outcome = DONE[link.decision].lower() if done else f"refused ({status}): {detail}"
    await uow.flush()
    if done:
        return Page(DONE[link.decision], [f"Your decision ({link.decision}) was recorded."])
    return Page("The decision was refused", [detail], status_code=status)
