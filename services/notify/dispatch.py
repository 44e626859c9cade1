"""Who gets what, on which channel, and when: one queued row per (event, person, channel).

A row's unique key (dedupe key, person, channel) makes each message happen at most once however
often an event is redelivered; an SLA warning's key is its task, so repeated warnings fold into
one row (`repeats`). Each row is then: delivered at once (in-app), queued for now or for the end
of the person's quiet hours, or held in a bundle (the daily digest the person chose, or a summary
when they already had `rate_limit_count` messages on that channel within the window).
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from typing import cast

import holidays
from sqlalchemy import func, select

from services.notify import preferences
from services.notify.models import ActionLink, Notification, Person, Team
from shared.db import utcnow
from shared.uow import UnitOfWork

BUNDLE_KINDS = ("summary", "digest")
FOLDED_KINDS = frozenset({"sla_warning", "deliverable_sla_warning"})


@dataclass(frozen=True)
class Message:
    """What a notification says: a title, facts (label, value), a link, and the task it may decide."""

    kind: str
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    link: str | None = None
    task_id: str | None = None


@dataclass(frozen=True)
class Rules:
    rate_limit_count: int
    rate_limit_window: dt.timedelta
    digest_hour: int
    action_link_ttl: dt.timedelta


def _hhmm(text: str) -> dt.time:
    h, m = text.split(":")
    return dt.time(int(h), int(m))


@lru_cache(maxsize=256)
def _holidays(calendar: str) -> holidays.HolidayBase:
    country, _, sub = calendar.partition("-")
    return holidays.country_holidays(country, subdiv=sub or None)


def _quiet(p: Person, local: dt.datetime) -> bool:
    if p.calendar and local.date() in _holidays(p.calendar):
        return True
    if not (p.quiet_start and p.quiet_end):
        return False
    start, end, t = _hhmm(p.quiet_start), _hhmm(p.quiet_end), local.time()
    return start <= t < end if start < end else (t >= start or t < end)


def send_time(p: Person, now: dt.datetime) -> dt.datetime:
    """`now`, or when the person's quiet hours (and public holidays of their calendar) are over."""
    tz = zoneinfo.ZoneInfo(p.timezone)
    local = now.astimezone(tz)
    if not _quiet(p, local):
        return now
    # Step forward to the first minute that is not quiet: the end of quiet hours, or the next working day.
    end = _hhmm(p.quiet_end) if p.quiet_end else dt.time(0, 0)
    candidate = local
    for _ in range(400):
        day_end = dt.datetime.combine(candidate.date(), end, tzinfo=tz)
        candidate = day_end if day_end > candidate else day_end + dt.timedelta(days=1)
        if not _quiet(p, candidate):
            return candidate.astimezone(dt.UTC)
    return now  # a calendar with no working day in 400 days: send rather than hold forever


def digest_time(p: Person, now: dt.datetime, hour: int) -> dt.datetime:
    """The next `hour`:00 in the person's time zone after `now`, past their quiet hours."""
    tz = zoneinfo.ZoneInfo(p.timezone)
    local = now.astimezone(tz)
    at = dt.datetime.combine(local.date(), dt.time(hour), tzinfo=tz)
    if at <= local:
        at += dt.timedelta(days=1)
    return send_time(p, at.astimezone(dt.UTC))


def reachable(p: Person, team: Team | None, channel: str) -> bool:
    if channel == "email":
        return bool(p.email)
    if channel == "slack":
        return bool(p.slack_webhook_url or (team and team.slack_webhook_url))
    if channel == "teams":
        return bool(p.teams_webhook_url or (team and team.teams_webhook_url))
    return channel == "in_app"


async def _bundle(uow: UnitOfWork, p: Person, channel: str, kind: str, due: dt.datetime) -> str:
    """The summary or digest row that holds messages until `due` (created on first use)."""
    key = f"{kind}:{due.isoformat()}"
    n = Notification
    found = await uow.scalar(select(n.id).where(n.dedupe_key == key, n.person_id == p.id, n.channel == channel))
    if found:
        return str(found)
    row = _row(p.id, channel, kind, key, None, Message(kind, kind), status="pending", due_at=due)
    uow.add(row)
    await uow.flush()
    return row.id


def _row(
    person_id: str,
    channel: str,
    kind: str,
    key: str,
    event_id: str | None,
    m: Message,
    *,
    status: str,
    due_at: dt.datetime,
    bundle_id: str | None = None,
) -> Notification:
    now = utcnow()
    return Notification(
        id=str(uuid.uuid4()),
        person_id=person_id,
        channel=channel,
        kind=kind,
        event_id=event_id,
        dedupe_key=key,
        title=m.title[:500],
        facts=[list(f) for f in m.facts],
        link=m.link,
        task_id=m.task_id,
        status=status,
        bundle_id=bundle_id,
        repeats=0,
        due_at=due_at,
        attempts=0,
        created_at=now,
        sent_at=now if status == "delivered" else None,
    )


async def _recent(uow: UnitOfWork, p: Person, channels: list[str], since: dt.datetime) -> dict[str, int]:
    """Messages the person got (or will get) on each channel since `since`, bundles and in-app aside."""
    if not channels:
        return {}
    n = Notification
    rows = await uow.execute(
        select(n.channel, func.count())
        .where(
            n.person_id == p.id,
            n.channel.in_(channels),
            n.created_at >= since,
            n.kind.not_in(BUNDLE_KINDS),
            n.status.in_(("pending", "sent", "failed")),
        )
        .group_by(n.channel)
    )
    return {str(channel): int(count) for channel, count in cast(list[tuple[str, int]], rows.all())}


async def notify(
    uow: UnitOfWork, rules: Rules, p: Person, m: Message, *, event_id: str, dedupe_key: str | None = None
) -> list[Notification]:
    """Queue `m` for `p` on each channel they chose for its kind; returns the rows written.

    A handful of statements per person whatever the channels: preferences, the rows this event
    already has, the recent count per channel, and the inserts (flushed together)."""
    choice = preferences.effective(await preferences.of_person(uow, p.id), m.kind)
    if not choice.enabled:
        return []
    needs_team = p.team and any(c in ("slack", "teams") and not getattr(p, f"{c}_webhook_url") for c in choice.channels)
    team = await uow.get(Team, p.team) if needs_team else None
    channels = [c for c in dict.fromkeys(choice.channels) if reachable(p, team, c)]
    if not channels:
        return []
    key = dedupe_key or event_id
    n = Notification
    existing = {
        r.channel: r
        for r in (
            await uow.scalars(select(n).where(n.dedupe_key == key, n.person_id == p.id, n.channel.in_(channels)))
        ).all()
    }
    for row in existing.values():
        if m.kind in FOLDED_KINDS and row.event_id != event_id:
            row.repeats += 1  # another warning for the same task: one message says it
    now = utcnow()
    fresh = [c for c in channels if c not in existing]
    limited = [c for c in fresh if c != "in_app"] if choice.mode != "digest" else []
    recent = await _recent(uow, p, limited, now - rules.rate_limit_window)
    written = []
    for channel in fresh:
        if channel == "in_app":
            row = _row(p.id, channel, m.kind, key, event_id, m, status="delivered", due_at=now)
        elif choice.mode == "digest":
            bundle = await _bundle(uow, p, channel, "digest", digest_time(p, now, rules.digest_hour))
            row = _row(p.id, channel, m.kind, key, event_id, m, status="bundled", due_at=now, bundle_id=bundle)
        elif recent.get(channel, 0) >= rules.rate_limit_count:
            window = rules.rate_limit_window.total_seconds()
            end = dt.datetime.fromtimestamp((now.timestamp() // window + 1) * window, dt.UTC)
            bundle = await _bundle(uow, p, channel, "summary", send_time(p, end))
            row = _row(p.id, channel, m.kind, key, event_id, m, status="bundled", due_at=now, bundle_id=bundle)
        else:
            row = _row(p.id, channel, m.kind, key, event_id, m, status="pending", due_at=send_time(p, now))
        uow.add(row)
        written.append(row)
        if channel == "email" and m.task_id:
            for decision in ("approve", "reject"):
                uow.add(
                    ActionLink(
                        id=str(uuid.uuid4()),
                        person_id=p.id,
                        task_id=m.task_id,
                        decision=decision,
                        notification_id=row.id,
                        expires_at=now + rules.action_link_ttl,
                        created_at=now,
                    )
                )
    if written or existing:
        await uow.flush()
    return written
