"""Preferences: per person and kind of notification, the channels, immediate or daily digest, on or off.

A kind without its own row follows the person's `*` row, and without that the default (e-mail and
in-app, immediate). Some kinds a person's role requires them to hear (an SLA breach on their own
task or deliverable, a partner subscription of theirs disabled): unsubscribing does not silence those.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select

from services.notify import schemas
from services.notify.models import Preference
from shared.db import utcnow
from shared.uow import UnitOfWork

DEFAULT_CHANNELS: tuple[str, ...] = ("email", "in_app")
REQUIRED = frozenset({"sla_breached", "deliverable_sla_breached", "subscription_disabled"})


@dataclass(frozen=True)
class Choice:
    channels: tuple[str, ...]
    mode: str
    enabled: bool


DEFAULT = Choice(DEFAULT_CHANNELS, "immediate", True)


async def of_person(uow: UnitOfWork, person_id: str) -> dict[str, Choice]:
    rows = (await uow.scalars(select(Preference).where(Preference.person_id == person_id))).all()
    return {r.kind: Choice(tuple(r.channels), r.mode, r.enabled) for r in rows}


def effective(prefs: dict[str, Choice], kind: str) -> Choice:
    """What applies to `kind`: its row, else `*`, else the default; a required kind is never off and
    always reaches the person at least in-app and by e-mail."""
    choice = prefs.get(kind) or prefs.get("*") or DEFAULT
    if kind in REQUIRED:
        channels = tuple(dict.fromkeys((*choice.channels, *DEFAULT_CHANNELS)))
        return Choice(channels, "immediate", True)
    return choice


async def get(uow: UnitOfWork, person_id: str) -> schemas.Preferences:
    rows = (
        await uow.scalars(select(Preference).where(Preference.person_id == person_id).order_by(Preference.kind))
    ).all()
    return schemas.Preferences(
        items=[
            schemas.PreferenceIn(kind=r.kind, channels=list(r.channels), mode=r.mode, enabled=r.enabled) for r in rows
        ]
    )


async def put(uow: UnitOfWork, person_id: str, body: schemas.Preferences) -> schemas.Preferences:
    """Replace the person's preferences with `body` (kinds not named follow `*` or the default)."""
    await uow.execute(delete(Preference).where(Preference.person_id == person_id))
    now = utcnow()
    for p in body.items:
        uow.add(
            Preference(
                person_id=person_id,
                kind=p.kind,
                channels=list(dict.fromkeys(p.channels)),
                mode=p.mode,
                enabled=p.enabled,
                updated_at=now,
            )
        )
    await uow.flush()
    await uow.audit("preferences", person_id, action="notify.preferences.replaced", after=body.model_dump(mode="json"))
    return await get(uow, person_id)


async def unsubscribe(uow: UnitOfWork, person_id: str, kind: str) -> bool:
    """Turn `kind` off for the person (from an e-mail's link); False when the kind is required."""
    if kind in REQUIRED:
        return False
    row = await uow.get(Preference, (person_id, kind))
    if row is None:
        base = (await of_person(uow, person_id)).get("*") or DEFAULT
        row = Preference(person_id=person_id, kind=kind, channels=list(base.channels), mode=base.mode)
        uow.add(row)
    row.enabled = False
    row.updated_at = utcnow()
    await uow.flush()
    await uow.audit("preferences", person_id, action="notify.preferences.unsubscribed", after={"kind": kind})
    return True
