"""Domain logic of the workflow service: no HTTP, no framework.

Definitions are versioned JSON documents; an instance pins the version it started
with. Each active stage has one task whose seats (roles and users) say who may
decide; `any` needs one approval, `quorum` n, `all` every seat. SLA warning and
breach are durable timers (shared.timers) fired in the scheduler's transaction,
together with their outbox events and the escalation. Every change appends to
the instance's history in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, and_, cast, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.workflow import conditions
from services.workflow.calendars import HORIZON, HORIZON_YEARS, MAX_CLOSED_DAYS, BusinessCalendar, CalendarError
from services.workflow.models import approvals, calendars, definitions, history, instances, task_seats, tasks
from shared import timers
from shared.app import Runtime
from shared.bounds import MAX_DATE, check_date
from shared.db import utcnow
from shared.errors import Conflict, Errors, FieldError, Forbidden, Invalid, NotFound, PreconditionFailed
from shared.identity import ROLES, Principal
from shared.pagination import decode_cursor, encode_cursor, instant

FINISHED = ("approved", "rejected", "cancelled")
WARNING, BREACH = "workflow.sla.warning", "workflow.sla.breach"
DEFAULT_CALENDAR = "default"
SYSTEM = "system"

DEFAULT_CALENDAR_DOC = {
    "key": DEFAULT_CALENDAR,
    "timezone": "UTC",
    "hours": {d: ["09:00", "17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": {},
    "closed_dates": [],
}
DEFAULT_DEFINITIONS: list[dict[str, Any]] = [
    {
        "key": "budget-approval",
        "name": "Budget commitment approval",
        "description": "Shipped default for commitments over threshold or over the money available.",
        "trigger": {"event": "budget.commitment.requested", "conditions": [], "priority": -1000},
        "stages": [
            {
                "name": "Regional approval",
                "assignees": {"roles": ["approver"], "users": [], "scope_from_context": ["region"]},
                "mode": "any",
                "sla": {"business_hours": "8", "calendar": DEFAULT_CALENDAR, "warn_at": "0.75"},
                "escalation": {"reassign_to_role": "mops"},
            }
        ],
    },
    {
        "key": "tool-renewal",
        "name": "Martech tool renewal review",
        "description": "Shipped default: marketing ops decides before the contract's notice deadline.",
        "trigger": {"event": "registry.renewal.due", "conditions": [], "priority": -1000},
        "stages": [
            {
                "name": "Renewal review",
                "assignees": {"roles": ["mops"], "users": []},
                "mode": "any",
                "sla": {"deadline_from_context": "notice_deadline", "calendar": DEFAULT_CALENDAR, "warn_at": "0.75"},
                "escalation": {"notify": ["admin", "mops"]},
            }
        ],
    },
]


def _id() -> str:
    return str(uuid.uuid4())


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


class Engine:
    """The workflow domain, bound to one service runtime (its outbox and timers table)."""

    def __init__(self, runtime: Runtime):
        self.rt = runtime
        self.timers = runtime.infra.timers
        self._calendars: dict[str, BusinessCalendar] = {}
        self._definitions: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ calendars

    async def create_calendar(self, s: AsyncSession, body: dict[str, Any], actor: str) -> dict[str, Any]:
        hol = body.get("holidays") or {}
        cal = BusinessCalendar.build(
            body["timezone"], body["hours"], hol.get("country"), hol.get("subdivision"), body.get("closed_dates") or []
        )
        closure = cal.longest_closure()
        if closure and (closure[1] - closure[0]).days >= MAX_CLOSED_DAYS:
            raise Invalid.on(
                "closed_dates",
                f"leave no business hours from {closure[0]} to {closure[1]}; "
                f"a calendar must open at least once in {MAX_CLOSED_DAYS} days",
            )
        if await s.scalar(select(calendars.c.id).where(calendars.c.key == body["key"])):
            raise Conflict(f"Calendar {body['key']!r} already exists; calendars are immutable, use a new key.")
        row = {
            "id": _id(),
            "key": body["key"],
            "timezone": body["timezone"],
            "hours": body["hours"],
            "holidays": {k: v for k, v in hol.items() if v},
            "closed_dates": [str(d) for d in body.get("closed_dates") or []],
            "version": 1,
            "created_at": utcnow(),
            "created_by": actor,
        }
        await s.execute(insert(calendars).values(**row))
        return _calendar_view(row)

    async def list_calendars(self, s: AsyncSession) -> list[dict[str, Any]]:
        rows = (await s.execute(select(calendars).order_by(calendars.c.key))).mappings().all()
        return [_calendar_view(dict(r)) for r in rows]

    async def get_calendar_view(self, s: AsyncSession, key: str) -> dict[str, Any]:
        row = (await s.execute(select(calendars).where(calendars.c.key == key))).mappings().first()
        if row is None:
            raise NotFound(f"No calendar {key!r}.")
        return _calendar_view(dict(row))

    async def calendar(self, s: AsyncSession, key: str) -> BusinessCalendar:
        """A calendar by key; cached for the process because calendars never change."""
        cal = self._calendars.get(key)
        if cal is None:
            row = (await s.execute(select(calendars).where(calendars.c.key == key))).mappings().first()
            if row is None:
                raise NotFound(f"No calendar {key!r}.")
            hol = row["holidays"] or {}
            cal = BusinessCalendar.build(  # stored before calendars.MAX_PERIODS: still served
                row["timezone"],
                row["hours"],
                hol.get("country"),
                hol.get("subdivision"),
                row["closed_dates"],
                max_periods=None,
            )
            self._calendars[key] = cal
        return cal

    # ---------------------------------------------------------------- definitions

    async def create_definition(
        self,
        s: AsyncSession,
        body: dict[str, Any],
        actor: str,
        *,
        version: int | None = None,
    ) -> dict[str, Any]:
        """Validate every part (all reasons at once) and publish it as the key's next version
        (or exactly `version`, failing with Conflict when it exists: how replicas ship defaults once)."""
        errors = Errors()
        known = set((await s.scalars(select(calendars.c.key))).all())
        calendar = body.get("calendar") or DEFAULT_CALENDAR
        if calendar not in known:
            errors.add("calendar", f"unknown calendar {calendar!r}")
        trigger = body.get("trigger")
        if trigger is not None:
            conditions.validate(trigger.get("conditions") or [], errors, "trigger.conditions")
        stages = body.get("stages") or []
        if not stages:
            errors.add("stages", "a definition needs at least one stage")
        names: set[str] = set()
        for i, st in enumerate(stages):
            _validate_stage(st, f"stages[{i}]", known, errors)
            if st["name"] in names:
                errors.add(f"stages[{i}].name", f"duplicate stage name {st['name']!r}")
            names.add(st["name"])
        now = utcnow()
        for i, st in enumerate(stages):  # an SLA the calendar cannot give would fail every instance
            sla = st.get("sla") or {}
            cal_key = sla.get("calendar") or calendar
            if sla.get("business_hours") and not sla.get("deadline_from_context") and cal_key in known:
                try:
                    (await self.calendar(s, cal_key)).add(now, _hours(sla["business_hours"]))
                except CalendarError as exc:
                    errors.add(f"stages[{i}].sla.business_hours", f"{exc} (calendar {cal_key!r})")
        errors.raise_if_any()
        if version is None:
            current = await s.scalar(select(func.max(definitions.c.version)).where(definitions.c.key == body["key"]))
            version = (current or 0) + 1
        row = {
            "id": _id(),
            "key": body["key"],
            "version": version,
            "name": body["name"],
            "description": body.get("description"),
            "trigger": trigger,
            "trigger_event": trigger["event"] if trigger else None,
            "priority": int((trigger or {}).get("priority") or 0),
            "calendar": calendar,
            "stages": [_normalise_stage(st, calendar) for st in stages],
            "created_at": utcnow(),
            "created_by": actor,
        }
        try:
            async with s.begin_nested():
                await s.execute(insert(definitions).values(**row))
        except IntegrityError as exc:
            raise Conflict(f"Another version of {body['key']!r} was published at the same moment; retry.") from exc
        return _definition_view(row)

    async def get_definition(self, s: AsyncSession, key: str, version: int | None = None) -> dict[str, Any]:
        q = select(definitions).where(definitions.c.key == key)
        q = q.where(definitions.c.version == version) if version else q.order_by(definitions.c.version.desc())
        row = (await s.execute(q.limit(1))).mappings().first()
        if row is None:
            raise NotFound(f"No definition {key!r}" + (f" version {version}." if version else "."))
        return dict(row)

    async def list_definitions(self, s: AsyncSession, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """Latest version of each key, by key."""
        latest = (
            select(definitions.c.key, func.max(definitions.c.version).label("v")).group_by(definitions.c.key).subquery()
        )
        q = (
            select(definitions)
            .join(latest, and_(definitions.c.key == latest.c.key, definitions.c.version == latest.c.v))
            .order_by(definitions.c.key)
        )
        after = decode_cursor(cursor)
        if after:
            q = q.where(definitions.c.key > str(after[0]))
        rows = [dict(r) for r in (await s.execute(q.limit(limit + 1))).mappings().all()]
        nxt = encode_cursor(rows[limit - 1]["key"]) if len(rows) > limit else None
        return [_definition_view(r) for r in rows[:limit]], nxt

    async def match_definition(self, s: AsyncSession, event: str, context: dict[str, Any]) -> dict[str, Any] | None:
        """The latest version of each definition triggered by `event` whose conditions hold; the best first:
        highest priority, then most specific (most leaf conditions), then key."""
        rows = [
            dict(r)
            for r in (
                await s.execute(
                    select(definitions)
                    .where(definitions.c.trigger_event == event)
                    .order_by(definitions.c.version.desc())
                )
            )
            .mappings()
            .all()
        ]
        latest: dict[str, dict[str, Any]] = {}
        for r in rows:
            latest.setdefault(r["key"], r)
        candidates = [
            r for r in latest.values() if conditions.evaluate((r["trigger"] or {}).get("conditions") or [], context)
        ]
        candidates.sort(
            key=lambda r: (-r["priority"], -conditions.specificity(r["trigger"].get("conditions") or []), r["key"])
        )
        return candidates[0] if candidates else None

    async def ensure_defaults(self) -> None:
        """Create the shipped calendar and definitions if missing; a racing replica's insert wins harmlessly."""
        async with self.rt.transaction() as s:
            exists = await s.scalar(select(calendars.c.id).where(calendars.c.key == DEFAULT_CALENDAR))
        if not exists:
            try:
                async with self.rt.transaction() as s:
                    await self.create_calendar(s, DEFAULT_CALENDAR_DOC, SYSTEM)
            except (IntegrityError, Conflict):
                pass
        for doc in DEFAULT_DEFINITIONS:
            async with self.rt.transaction() as s:
                exists = await s.scalar(select(definitions.c.id).where(definitions.c.key == doc["key"]))
            if exists:
                continue
            try:
                async with self.rt.transaction() as s:
                    await self.create_definition(s, doc, SYSTEM, version=1)
            except (IntegrityError, Conflict):
                pass

    # ------------------------------------------------------------------ instances

    async def start(
        self,
        s: AsyncSession,
        definition: dict[str, Any],
        subject: dict[str, str],
        context: dict[str, Any],
        requester: str,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        inst = {
            "id": _id(),
            "definition_id": definition["id"],
            "definition_key": definition["key"],
            "definition_version": definition["version"],
            "subject_type": subject["type"],
            "subject_id": str(subject["id"]),
            "subject_service": subject["service"],
            "context": context,
            "requester": requester,
            "status": "running",
            "current_stage": 0,
            "sla_met": True,
            "started_at": now,
            "finished_at": None,
            "cycle_time_business_seconds": None,
            "cycle_time_seconds": None,
            "version": 1,
            "correlation_id": correlation_id,
        }
        # Check the SLAs can be computed before writing anything (e.g. a missing notice_deadline).
        for i, stage in enumerate(definition["stages"]):
            await self._sla_window(s, stage, context, now, f"stages[{i}].sla")
        await s.execute(insert(instances).values(**inst))
        await self._history(s, inst["id"], requester, "started", detail={"definition_version": definition["version"]})
        await self._publish_instance(s, inst, "started")
        await self._activate(s, inst, definition, 0, now)
        return inst

    async def _activate(
        self,
        s: AsyncSession,
        inst: dict[str, Any],
        definition: dict[str, Any],
        index: int,
        now: dt.datetime,
        resume: dict[str, Any] | None = None,
    ) -> None:
        """Open the task of stage `index` (skipping auto-approved stages); past the last stage, approve."""
        stages = definition["stages"]
        while (
            index < len(stages)
            and resume is None
            and stages[index].get("auto_approve") is not None
            and conditions.evaluate(stages[index]["auto_approve"], inst["context"])
        ):
            await self._history(s, inst["id"], SYSTEM, "auto_approved", stage=stages[index]["name"])
            index += 1
        if index >= len(stages):
            await self._finish(s, inst, "approved", now)
            return
        stage = stages[index]
        await self._set_instance(s, inst, current_stage=index)
        task_id = _id()
        seats = _seats_of(stage["assignees"])
        required = {"any": 1, "all": len(seats), "quorum": stage.get("quorum") or 1}[stage["mode"]]
        scope = {
            d: str(inst["context"][d])
            for d in stage["assignees"].get("scope_from_context", [])
            if inst["context"].get(d) not in (None, "")
        }
        sla = stage.get("sla")
        calendar = (sla or {}).get("calendar") or definition["calendar"]
        warn_at = due_at = None
        sla_seconds = None
        warned = breached = False
        if resume is not None:
            warned, breached = resume["warned"], resume["breached"]
        if sla:
            cal = await self.calendar(s, calendar)
            if resume is not None and not sla.get("deadline_from_context") and resume["remaining"] is not None:
                sla_seconds = resume["sla_seconds"]
                with _stored_config(f"stages[{index}].sla"):
                    due_at = cal.add(now, dt.timedelta(seconds=max(0, resume["remaining"])))
                    if resume["warn_remaining"] is not None and not warned:
                        warn_at = cal.add(now, dt.timedelta(seconds=max(0, resume["warn_remaining"])))
            else:
                warn_at, due_at, sla_seconds = await self._sla_window(
                    s, stage, inst["context"], now, f"stages[{index}].sla"
                )
                warned = warned and resume is not None
        task = {
            "id": task_id,
            "instance_id": inst["id"],
            "stage_index": index,
            "stage": stage["name"],
            "status": "open",
            "mode": stage["mode"],
            "required": required,
            "scope": scope,
            "calendar": calendar,
            "sla_seconds": sla_seconds,
            "warn_at": warn_at,
            "due_at": due_at,
            "warned": warned,
            "breached": breached,
            "escalated": False,
            "decision": None,
            "actor": None,
            "created_at": now,
            "completed_at": None,
            "paused_remaining_seconds": None,
            "paused_warn_seconds": None,
        }
        await s.execute(insert(tasks).values(**task))
        await s.execute(
            insert(task_seats),
            [
                {"task_id": task_id, "seat": n, "kind": kind, "value": value, "delegated_by": None, "active": True}
                for n, (kind, value) in enumerate(seats)
            ],
        )
        payload = {"task_id": task_id, "instance_id": inst["id"]}
        if warn_at is not None and not warned:
            await timers.schedule(s, self.timers, WARNING, task_id, warn_at, payload)
        if due_at is not None and not breached:
            await timers.schedule(s, self.timers, BREACH, task_id, due_at, payload)
        await self._history(
            s,
            inst["id"],
            SYSTEM,
            "task_assigned",
            task_id=task_id,
            stage=stage["name"],
            detail={"assignees": stage["assignees"], "due_at": _iso(due_at)},
        )
        await self._publish_task(s, inst, task, "assigned", await self._assignees(s, task_id))

    async def _sla_window(
        self,
        s: AsyncSession,
        stage: dict[str, Any],
        context: dict[str, Any],
        now: dt.datetime,
        where: str,
    ) -> tuple[dt.datetime | None, dt.datetime | None, int | None]:
        """(warn_at, due_at, business seconds) of a stage's SLA starting now; `where` names the stage's
        sla in a Conflict when the stored definition asks more than its calendar gives."""
        sla = stage.get("sla")
        if not sla:
            return None, None, None
        cal = await self.calendar(s, sla["calendar"])
        warn_frac = Decimal(str(sla.get("warn_at") or "0.75"))
        with _stored_config(where):
            if sla.get("deadline_from_context"):
                name = sla["deadline_from_context"]
                due_at = _deadline(context.get(name), cal, f"context.{name}", now)
                total = cal.between(now, due_at) if due_at > now else dt.timedelta(0)
            else:
                total = _hours(sla["business_hours"])
                due_at = cal.add(now, total)
            warn_at = cal.add(now, dt.timedelta(seconds=int(total.total_seconds() * float(warn_frac))))
        if warn_at >= due_at:
            warn_at = None
        return warn_at, due_at, int(total.total_seconds())

    async def _finish(self, s: AsyncSession, inst: dict[str, Any], status: str, now: dt.datetime) -> None:
        definition = await self._definition_of(s, inst)
        cal = await self.calendar(s, definition["calendar"])
        business = cal.between(inst["started_at"], now)
        await self._set_instance(
            s,
            inst,
            status=status,
            finished_at=now,
            cycle_time_business_seconds=int(business.total_seconds()),
            cycle_time_seconds=int((now - inst["started_at"]).total_seconds()),
        )
        open_ids = (
            await s.scalars(select(tasks.c.id).where(tasks.c.instance_id == inst["id"], tasks.c.status == "open"))
        ).all()
        for tid in open_ids:
            await timers.cancel(s, self.timers, tid)
        if open_ids:
            await s.execute(update(tasks).where(tasks.c.id.in_(open_ids)).values(status="cancelled", completed_at=now))
        await self._history(
            s,
            inst["id"],
            SYSTEM,
            "finished",
            detail={
                "status": status,
                "sla_met": bool(inst["sla_met"]),
                "cycle_time_business_hours": round(business.total_seconds() / 3600, 4),
            },
        )
        await self._publish_instance(s, inst, status)

    # ----------------------------------------------------------------- decisions

    async def decide(
        self,
        s: AsyncSession,
        task_id: str,
        who: Principal,
        decision: str,
        comment: str | None,
    ) -> dict[str, Any]:
        """approve | reject | request_changes by an assignee (never the requester)."""
        task, inst = await self._task_for_update(s, task_id)
        seats = await self._eligible_seats(s, task, inst, who)
        now = utcnow()
        if decision == "approve":
            filled = {
                r.seat: r.actor
                for r in (
                    await s.execute(select(approvals.c.seat, approvals.c.actor).where(approvals.c.task_id == task_id))
                ).all()
            }
            if who.subject in filled.values():
                raise Conflict("You have already approved this task.")
            free = [n for n in seats if n not in filled]
            if not free:
                raise Conflict("Every seat you could fill on this task is already approved by someone else.")
            await s.execute(insert(approvals).values(task_id=task_id, seat=free[0], actor=who.subject, at=now))
            count = len(filled) + 1
            await self._history(
                s,
                inst["id"],
                who.subject,
                "approved",
                task_id=task_id,
                stage=task["stage"],
                comment=comment,
                detail={"approvals": count, "required": task["required"]},
            )
            if count >= task["required"]:
                await self._complete_task(s, inst, task, "approved", who.subject, now)
                definition = await self._definition_of(s, inst)
                await self._activate(s, inst, definition, task["stage_index"] + 1, now)
        elif decision == "reject":
            await self._history(
                s, inst["id"], who.subject, "rejected", task_id=task_id, stage=task["stage"], comment=comment
            )
            await self._complete_task(s, inst, task, "rejected", who.subject, now)
            await self._finish(s, inst, "rejected", now)
        elif decision == "request_changes":
            await self._pause(s, inst, task, who.subject, now, comment)
        else:  # pragma: no cover - the API only routes the three
            raise Invalid.on("decision", f"unknown decision {decision!r}")
        return await self.instance_view(s, inst["id"])

    async def _pause(
        self,
        s: AsyncSession,
        inst: dict[str, Any],
        task: dict[str, Any],
        actor: str,
        now: dt.datetime,
        comment: str | None,
    ) -> None:
        """Stop the SLA clock: cancel the timers and keep the business time that was left."""
        remaining = warn_remaining = None
        if task["due_at"] is not None:
            cal = await self.calendar(s, task["calendar"])
            remaining = math.ceil(cal.between(now, task["due_at"]).total_seconds())
            if task["warn_at"] is not None and not task["warned"]:
                warn_remaining = math.ceil(cal.between(now, task["warn_at"]).total_seconds())
        await timers.cancel(s, self.timers, task["id"])
        await s.execute(
            update(tasks)
            .where(tasks.c.id == task["id"])
            .values(
                status="changes_requested",
                decision="changes_requested",
                actor=actor,
                completed_at=now,
                paused_remaining_seconds=remaining,
                paused_warn_seconds=warn_remaining,
            )
        )
        task.update(status="changes_requested", decision="changes_requested", actor=actor)
        await self._history(
            s,
            inst["id"],
            actor,
            "changes_requested",
            task_id=task["id"],
            stage=task["stage"],
            comment=comment,
            detail={"remaining_business_seconds": remaining},
        )
        await self._publish_task(s, inst, task, "completed", await self._assignees(s, task["id"]))
        await self._set_instance(s, inst, status="changes_requested")
        await self._publish_instance(s, inst, "changes_requested")

    async def resubmit(
        self,
        s: AsyncSession,
        instance_id: str,
        who: Principal,
        context_patch: dict[str, Any] | None,
        comment: str | None,
        if_match: int | None,
    ) -> dict[str, Any]:
        """The requester reworked the request: the stage that asked opens again, with the SLA time left."""
        inst = await self._instance_for_update(s, instance_id, if_match)
        if inst["status"] != "changes_requested":
            raise Conflict(f"Only an instance with changes requested can be resubmitted; this one is {inst['status']}.")
        if who.subject != inst["requester"] and not who.has_role("admin"):
            raise Forbidden("Only the requester may resubmit.")
        paused = (
            (
                await s.execute(
                    select(tasks)
                    .where(tasks.c.instance_id == instance_id, tasks.c.status == "changes_requested")
                    .order_by(tasks.c.created_at.desc())
                    .limit(1)
                )
            )
            .mappings()
            .one()
        )
        now = utcnow()
        if context_patch:
            after = {**inst["context"], **context_patch}
            if not who.may_change(inst["context"], after):
                raise Forbidden(
                    f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover the request as it is "
                    "or as this change would make it."
                )
            await self._set_instance(s, inst, context=after)
        definition = await self._definition_of(s, inst)
        stage = definition["stages"][paused["stage_index"]]
        if (stage.get("sla") or {}).get("deadline_from_context"):
            await self._sla_window(s, stage, inst["context"], now, f"stages[{paused['stage_index']}].sla")
        await self._set_instance(s, inst, status="running")
        await self._history(
            s,
            instance_id,
            who.subject,
            "resubmitted",
            stage=paused["stage"],
            comment=comment,
            detail={"context_changes": sorted(context_patch or {})},
        )
        await self._publish_instance(s, inst, "resubmitted")
        await self._activate(
            s,
            inst,
            definition,
            paused["stage_index"],
            now,
            resume={
                "remaining": paused["paused_remaining_seconds"],
                "warn_remaining": paused["paused_warn_seconds"],
                "warned": paused["warned"],
                "breached": paused["breached"],
                "sla_seconds": paused["sla_seconds"],
            },
        )
        return await self.instance_view(s, instance_id)

    async def cancel(
        self,
        s: AsyncSession,
        instance_id: str,
        who: Principal,
        comment: str | None,
        if_match: int | None,
    ) -> dict[str, Any]:
        inst = await self._instance_for_update(s, instance_id, if_match)
        if who.subject != inst["requester"] and not who.has_role("admin", "mops"):
            raise Forbidden("Only the requester, mops or an admin may cancel an instance.")
        if who.subject != inst["requester"] and not who.may_see(inst["context"]):
            raise Forbidden(f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover this request's context.")
        if inst["status"] in FINISHED:
            raise Conflict(f"The instance is already {inst['status']}.")
        await self._history(s, instance_id, who.subject, "cancelled", comment=comment)
        await self._finish(s, inst, "cancelled", utcnow())
        return await self.instance_view(s, instance_id)

    async def delegate(
        self,
        s: AsyncSession,
        task_id: str,
        who: Principal,
        to_user: str,
        comment: str | None,
    ) -> dict[str, Any]:
        """Hand one's seat to another user, who may then decide on it as well."""
        task, inst = await self._task_for_update(s, task_id)
        seats = await self._eligible_seats(s, task, inst, who)
        if to_user == inst["requester"]:
            raise Invalid.on("to_user", "cannot be the requester (four eyes)")
        if to_user == who.subject:
            raise Invalid.on("to_user", "must be someone else")
        await s.execute(
            insert(task_seats).values(
                task_id=task_id,
                seat=seats[0],
                kind="user",
                value=to_user,
                delegated_by=who.subject,
                active=True,
            )
        )
        await self._history(
            s,
            inst["id"],
            who.subject,
            "delegated",
            task_id=task_id,
            stage=task["stage"],
            comment=comment,
            detail={"to_user": to_user},
        )
        await self._publish_task(s, inst, task, "assigned", await self._assignees(s, task_id))
        return await self.task_view(s, task, inst, utcnow())

    async def comment(self, s: AsyncSession, instance_id: str, who: Principal, text: str) -> dict[str, Any]:
        inst = await self._instance_for_update(s, instance_id, None)
        await self.ensure_visible(s, inst, who)
        seq = await self._history(s, instance_id, who.subject, "commented", comment=text)
        return {"seq": seq, "instance_id": instance_id, "actor": who.subject, "comment": text}

    # --------------------------------------------------------------- SLA timers

    async def on_warning(self, s: AsyncSession, timer: Any) -> None:
        task, inst = await self._timer_task(s, timer)
        if task is None or task["warned"]:
            return
        await s.execute(update(tasks).where(tasks.c.id == task["id"]).values(warned=True))
        definition = await self._definition_of(s, inst)
        stage = definition["stages"][task["stage_index"]]
        await self._history(
            s,
            inst["id"],
            SYSTEM,
            "sla_warning",
            task_id=task["id"],
            stage=task["stage"],
            detail={"due_at": _iso(task["due_at"])},
        )
        await self._publish_sla(s, inst, task, "warning", stage.get("escalation") or {})

    async def on_breach(self, s: AsyncSession, timer: Any) -> None:
        task, inst = await self._timer_task(s, timer)
        if task is None or task["breached"]:
            return
        definition = await self._definition_of(s, inst)
        escalation = definition["stages"][task["stage_index"]].get("escalation") or {}
        await s.execute(update(tasks).where(tasks.c.id == task["id"]).values(breached=True, escalated=bool(escalation)))
        await self._set_instance(s, inst, sla_met=False)
        reassigned = False
        if escalation.get("reassign_to_role"):
            top = await s.scalar(select(func.max(task_seats.c.seat)).where(task_seats.c.task_id == task["id"]))
            approved = await s.scalar(
                select(func.count()).select_from(approvals).where(approvals.c.task_id == task["id"])
            )
            await s.execute(update(task_seats).where(task_seats.c.task_id == task["id"]).values(active=False))
            await s.execute(
                insert(task_seats).values(
                    task_id=task["id"],
                    seat=(top or 0) + 1,
                    kind="role",
                    value=escalation["reassign_to_role"],
                    delegated_by=None,
                    active=True,
                )
            )
            await s.execute(update(tasks).where(tasks.c.id == task["id"]).values(required=(approved or 0) + 1))
            reassigned = True
        if escalation.get("add_approver"):
            top = await s.scalar(select(func.max(task_seats.c.seat)).where(task_seats.c.task_id == task["id"]))
            await s.execute(
                insert(task_seats).values(
                    task_id=task["id"],
                    seat=(top or 0) + 1,
                    kind="user",
                    value=escalation["add_approver"],
                    delegated_by=None,
                    active=True,
                )
            )
            reassigned = True
        await self._history(
            s,
            inst["id"],
            SYSTEM,
            "sla_breached",
            task_id=task["id"],
            stage=task["stage"],
            detail={"due_at": _iso(task["due_at"]), "escalation": escalation},
        )
        await self._publish_sla(s, inst, task, "breached", escalation)
        if reassigned:
            await self._publish_task(s, inst, task, "assigned", await self._assignees(s, task["id"]))

    async def _timer_task(self, s: AsyncSession, timer: Any) -> tuple[dict | None, dict | None]:
        """The timer's task and its locked instance, or (None, None) when the task is no longer open."""
        payload = timer.payload or {}
        task_id = payload.get("task_id") or timer.subject_id
        instance_id = payload.get("instance_id") or await s.scalar(
            select(tasks.c.instance_id).where(tasks.c.id == task_id)
        )
        if instance_id is None:
            return None, None
        inst = await self._instance_for_update(s, instance_id, None, from_timer=True)
        task = (await s.execute(select(tasks).where(tasks.c.id == task_id))).mappings().first()
        if task is None or task["status"] != "open" or inst["status"] != "running":
            return None, None
        return dict(task), inst

    # --------------------------------------------------------------------- reads

    async def get_instance_row(self, s: AsyncSession, instance_id: str) -> dict[str, Any]:
        row = (await s.execute(select(instances).where(instances.c.id == instance_id))).mappings().first()
        if row is None:
            raise NotFound(f"No workflow instance {instance_id}.")
        return dict(row)

    async def ensure_visible(self, s: AsyncSession, inst: dict[str, Any], who: Principal) -> None:
        """Requester and assignees always see an instance; others within their scopes."""
        if who.subject == inst["requester"] or who.may_see(inst["context"]):
            return
        open_task = (
            (await s.execute(select(tasks).where(tasks.c.instance_id == inst["id"], tasks.c.status == "open")))
            .mappings()
            .first()
        )
        if open_task and await self._seats_for(s, dict(open_task), who):
            return
        raise NotFound(f"No workflow instance {inst['id']}.")

    async def instance_view(self, s: AsyncSession, instance_id: str, full: bool = True) -> dict[str, Any]:
        inst = await self.get_instance_row(s, instance_id)
        view = _instance_summary(inst)
        if not full:
            return view
        definition = await self._definition_of(s, inst)
        now = utcnow()
        task_rows = [
            dict(r)
            for r in (
                await s.execute(
                    select(tasks).where(tasks.c.instance_id == instance_id).order_by(tasks.c.created_at, tasks.c.id)
                )
            )
            .mappings()
            .all()
        ]
        view["tasks"] = [await self.task_view(s, t, inst, now) for t in task_rows]
        view["stages"] = []
        for i, st in enumerate(definition["stages"]):
            mine = [t for t in task_rows if t["stage_index"] == i]
            status = mine[-1]["status"] if mine else ("skipped" if i < inst["current_stage"] else "pending")
            if not mine and i < inst["current_stage"]:
                status = "auto_approved"
            view["stages"].append(
                {
                    "index": i,
                    "name": st["name"],
                    "mode": st["mode"],
                    "status": status,
                    "sla": st.get("sla"),
                    "escalation": st.get("escalation"),
                }
            )
        view["history"] = [
            {
                "seq": h["seq"],
                "at": _iso(h["at"]),
                "actor": h["actor"],
                "action": h["action"],
                "task_id": h["task_id"],
                "stage": h["stage"],
                "comment": h["comment"],
                "detail": h["detail"],
            }
            for h in (
                await s.execute(select(history).where(history.c.instance_id == instance_id).order_by(history.c.seq))
            )
            .mappings()
            .all()
        ]
        return view

    async def list_instances(
        self,
        s: AsyncSession,
        who: Principal,
        *,
        status: str | None,
        definition_key: str | None,
        subject_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        q = select(instances).order_by(instances.c.started_at.desc(), instances.c.id.desc())
        if status:
            q = q.where(instances.c.status == status)
        if definition_key:
            q = q.where(instances.c.definition_key == definition_key)
        if subject_id:
            q = q.where(instances.c.subject_id == subject_id)
        after = decode_cursor(cursor, instant, str)
        if after:
            at = after[0]
            q = q.where(or_(instances.c.started_at < at, and_(instances.c.started_at == at, instances.c.id < after[1])))
        out: list[dict[str, Any]] = []
        batch = max(limit * 2, 50)
        offset = 0
        while len(out) <= limit:
            rows = [dict(r) for r in (await s.execute(q.limit(batch).offset(offset))).mappings().all()]
            for r in rows:
                if who.subject == r["requester"] or who.may_see(r["context"]):
                    out.append(r)
            if len(rows) < batch:
                break
            offset += batch
        nxt = encode_cursor(_iso(out[limit - 1]["started_at"]), out[limit - 1]["id"]) if len(out) > limit else None
        return [_instance_summary(r) for r in out[:limit]], nxt

    async def inbox(
        self,
        s: AsyncSession,
        who: Principal,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Open tasks the caller may decide now, by SLA due time (no SLA last)."""
        seat_match = or_(
            and_(task_seats.c.kind == "user", task_seats.c.value == who.subject),
            and_(task_seats.c.kind == "role", task_seats.c.value.in_(sorted(who.roles))),
        )
        q = (
            select(tasks, instances.c.requester)
            .join(task_seats, task_seats.c.task_id == tasks.c.id)
            .join(instances, instances.c.id == tasks.c.instance_id)
            .where(
                tasks.c.status == "open",
                task_seats.c.active.is_(True),
                seat_match,
                instances.c.requester != who.subject,
            )
            .distinct()
        )
        rows = [dict(r) for r in (await s.execute(q)).mappings().all()]
        now = utcnow()
        far = dt.datetime.combine(MAX_DATE, dt.time.max, tzinfo=dt.UTC)  # no SLA sorts last; a cursor must hold it
        rows.sort(key=lambda t: (t["due_at"] or far, t["id"]))
        after = decode_cursor(cursor, instant, str)
        if after:
            key = (after[0], after[1])
            rows = [t for t in rows if (t["due_at"] or far, t["id"]) > key]
        out: list[dict[str, Any]] = []
        for t in rows:
            inst = await self.get_instance_row(s, t["instance_id"])
            free = await self._seats_for(s, t, who)
            mine = await s.scalar(
                select(approvals.c.seat).where(approvals.c.task_id == t["id"], approvals.c.actor == who.subject)
            )
            if free and mine is None:
                out.append(await self.task_view(s, t, inst, now))
            if len(out) > limit:
                break
        nxt = None
        if len(out) > limit:
            last = out[limit - 1]
            nxt = encode_cursor(last["due_at"] or far.isoformat(), last["id"])
        return out[:limit], nxt

    async def task_view(
        self,
        s: AsyncSession,
        task: dict[str, Any],
        inst: dict[str, Any],
        now: dt.datetime,
    ) -> dict[str, Any]:
        remaining = None
        # Due times lie within HORIZON of the task's start; one beyond twice that (a row written before the
        # bounds, or a task overdue for decades) gets no count rather than a walk over every day in between.
        if task["due_at"] is not None and task["status"] == "open" and abs(task["due_at"] - now) <= 2 * HORIZON:
            cal = await self.calendar(s, task["calendar"])
            remaining = math.floor(cal.between(now, task["due_at"]).total_seconds() / 60)
        app_rows = (
            await s.execute(
                select(approvals.c.actor, approvals.c.at)
                .where(approvals.c.task_id == task["id"])
                .order_by(approvals.c.at)
            )
        ).all()
        return {
            "id": task["id"],
            "instance_id": task["instance_id"],
            "definition_key": inst["definition_key"],
            "subject": _subject(inst),
            "requester": inst["requester"],
            "stage": task["stage"],
            "stage_index": task["stage_index"],
            "status": task["status"],
            "mode": task["mode"],
            "required_approvals": task["required"],
            "approvals": [{"actor": a.actor, "at": _iso(a.at)} for a in app_rows],
            "assignees": await self._assignees(s, task["id"]),
            "scope": task["scope"],
            "calendar": task["calendar"],
            "warn_at": _iso(task["warn_at"]),
            "due_at": _iso(task["due_at"]),
            "remaining_business_minutes": remaining,
            "sla_state": _sla_state(task, now),
            "escalated": task["escalated"],
            "decision": task["decision"],
            "actor": task["actor"],
            "created_at": _iso(task["created_at"]),
            "completed_at": _iso(task["completed_at"]),
        }

    async def get_task(self, s: AsyncSession, task_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        task = (await s.execute(select(tasks).where(tasks.c.id == task_id))).mappings().first()
        if task is None:
            raise NotFound(f"No task {task_id}.")
        return dict(task), await self.get_instance_row(s, task["instance_id"])

    async def sla_report(
        self,
        s: AsyncSession,
        definition_key: str | None,
        start: dt.datetime | None,
        end: dt.datetime | None,
    ) -> dict[str, Any]:
        """The bottleneck view over instances finished in [start, end)."""
        q = select(instances).where(instances.c.finished_at.is_not(None))
        if definition_key:
            q = q.where(instances.c.definition_key == definition_key)
        if start:
            q = q.where(instances.c.finished_at >= start)
        if end:
            q = q.where(instances.c.finished_at < end)
        rows = [dict(r) for r in (await s.execute(q)).mappings().all()]
        business = sorted(r["cycle_time_business_seconds"] / 3600 for r in rows)
        wall = sorted(r["cycle_time_seconds"] / 3600 for r in rows)
        ids = [r["id"] for r in rows]
        per_stage: dict[str, dict[str, int]] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for stage, total, breached in (
                await s.execute(
                    select(tasks.c.stage, func.count(), func.sum(cast(tasks.c.breached, Integer)))
                    .where(tasks.c.instance_id.in_(chunk))
                    .group_by(tasks.c.stage)
                )
            ).all():
                agg = per_stage.setdefault(stage, {"tasks": 0, "breaches": 0})
                agg["tasks"] += int(total)
                agg["breaches"] += int(breached or 0)
        met = sum(1 for r in rows if r["sla_met"])
        by_outcome: dict[str, int] = {}
        for r in rows:
            by_outcome[r["status"]] = by_outcome.get(r["status"], 0) + 1
        return {
            "definition": definition_key,
            "from": _iso(start),
            "to": _iso(end),
            "count": len(rows),
            "outcomes": by_outcome,
            "cycle_time_business_hours": {"median": _pct(business, 50), "p90": _pct(business, 90)},
            "cycle_time_hours": {"median": _pct(wall, 50), "p90": _pct(wall, 90)},
            "sla_attainment_pct": round(100 * met / len(rows), 2) if rows else None,
            "breaches_per_stage": [
                {"stage": k, "tasks": v["tasks"], "breaches": v["breaches"]}
                for k, v in sorted(per_stage.items(), key=lambda kv: (-kv[1]["breaches"], kv[0]))
            ],
        }

    # ------------------------------------------------------------------ helpers

    async def _task_for_update(self, s: AsyncSession, task_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        task = (await s.execute(select(tasks.c.instance_id).where(tasks.c.id == task_id))).first()
        if task is None:
            raise NotFound(f"No task {task_id}.")
        inst = await self._instance_for_update(s, task.instance_id, None)
        row = dict((await s.execute(select(tasks).where(tasks.c.id == task_id))).mappings().one())
        if inst["status"] in FINISHED:
            raise Conflict(f"The instance is already {inst['status']}; its tasks are closed.")
        if row["status"] != "open":
            raise Conflict(f"The task is {row['status']}; only an open task can be acted on.")
        return row, inst

    async def _instance_for_update(
        self,
        s: AsyncSession,
        instance_id: str,
        if_match: int | None,
        *,
        from_timer: bool = False,
    ) -> dict[str, Any]:
        """Lock the instance row: every change of one instance is serialised (SQLite: the write lock).

        Lock order is timers, then instance, everywhere: the scheduler holds its claimed timer rows
        when a handler locks the instance, so a request locks the instance's pending timers first
        (waiting for a firing in flight to commit) instead of deadlocking with it.
        """
        if not from_timer:
            t = self.timers
            await s.execute(
                select(t.c.id)
                .where(
                    t.c.subject_id.in_(select(tasks.c.id).where(tasks.c.instance_id == instance_id)),
                    t.c.status == "pending",
                )
                .with_for_update()
            )
        row = (
            (await s.execute(select(instances).where(instances.c.id == instance_id).with_for_update()))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"No workflow instance {instance_id}.")
        if if_match is not None and row["version"] != if_match:
            raise PreconditionFailed(f"The instance is at version {row['version']}, not {if_match}; reload it.")
        return dict(row)

    async def _eligible_seats(self, s: AsyncSession, task: dict, inst: dict, who: Principal) -> list[int]:
        if who.subject == inst["requester"]:
            raise Forbidden("Four eyes: the requester cannot decide on their own request.")
        if not who.may_see(inst["context"]):
            raise Forbidden(
                f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover this request's context; "
                "someone whose scopes do must decide it."
            )
        seats = await self._seats_for(s, task, who)
        if not seats:
            raise Forbidden("This task is not assigned to you (by user, role or scope).")
        return seats

    async def _seats_for(self, s: AsyncSession, task: dict, who: Principal) -> list[int]:
        rows = (
            await s.execute(
                select(task_seats.c.seat, task_seats.c.kind, task_seats.c.value)
                .where(task_seats.c.task_id == task["id"], task_seats.c.active.is_(True))
                .order_by(task_seats.c.seat)
            )
        ).all()
        out: list[int] = []
        for seat, kind, value in rows:
            if kind == "user" and value == who.subject:
                out.append(seat)
            elif kind == "role" and value in who.roles and _in_scope(who, task["scope"]):
                out.append(seat)
        return sorted(set(out))

    async def _assignees(self, s: AsyncSession, task_id: str) -> dict[str, list[str]]:
        rows = (
            await s.execute(
                select(task_seats.c.kind, task_seats.c.value)
                .where(task_seats.c.task_id == task_id, task_seats.c.active.is_(True))
                .order_by(task_seats.c.seat)
            )
        ).all()
        return {
            "roles": list(dict.fromkeys(v for k, v in rows if k == "role")),
            "users": list(dict.fromkeys(v for k, v in rows if k == "user")),
        }

    async def _definition_of(self, s: AsyncSession, inst: dict[str, Any]) -> dict[str, Any]:
        """The pinned definition version of an instance; cached, as a published version never changes."""
        found = self._definitions.get(inst["definition_id"])
        if found is None:
            row = (
                (await s.execute(select(definitions).where(definitions.c.id == inst["definition_id"]))).mappings().one()
            )
            found = self._definitions[inst["definition_id"]] = dict(row)
        return found

    async def _set_instance(self, s: AsyncSession, inst: dict[str, Any], **values: Any) -> None:
        inst.update(values)
        inst["version"] += 1
        await s.execute(update(instances).where(instances.c.id == inst["id"]).values(**values, version=inst["version"]))

    async def _complete_task(
        self,
        s: AsyncSession,
        inst: dict,
        task: dict,
        decision: str,
        actor: str,
        now: dt.datetime,
    ) -> None:
        await timers.cancel(s, self.timers, task["id"])
        await s.execute(
            update(tasks)
            .where(tasks.c.id == task["id"])
            .values(
                status=decision,
                decision=decision,
                actor=actor,
                completed_at=now,
            )
        )
        task.update(status=decision, decision=decision, actor=actor, completed_at=now)
        await self._publish_task(s, inst, task, "completed", await self._assignees(s, task["id"]))

    async def _history(
        self,
        s: AsyncSession,
        instance_id: str,
        actor: str,
        action: str,
        *,
        task_id: str | None = None,
        stage: str | None = None,
        comment: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        result = await s.execute(
            insert(history).values(
                instance_id=instance_id,
                at=utcnow(),
                actor=actor,
                action=action,
                task_id=task_id,
                stage=stage,
                comment=comment,
                detail=detail or {},
            )
        )
        return int(result.inserted_primary_key[0])

    async def _publish_instance(self, s: AsyncSession, inst: dict[str, Any], what: str) -> None:
        data: dict[str, Any] = {
            "instance_id": inst["id"],
            "definition_key": inst["definition_key"],
            "definition_version": inst["definition_version"],
            "subject": _subject(inst),
            "context": inst["context"],
            "requester": inst["requester"],
            "status": inst["status"],
        }
        if inst["status"] in FINISHED:
            data.update(
                finished_at=_iso(inst["finished_at"]),
                cycle_time_business_hours=round(inst["cycle_time_business_seconds"] / 3600, 4),
                cycle_time_hours=round(inst["cycle_time_seconds"] / 3600, 4),
                sla_met=bool(inst["sla_met"]),
            )
        await self.rt.outbox.add(s, f"workflow.instance.{what}", inst["id"], data, inst.get("correlation_id"))

    async def _publish_task(
        self,
        s: AsyncSession,
        inst: dict,
        task: dict,
        what: str,
        assignees: dict[str, list[str]],
    ) -> None:
        await self.rt.outbox.add(
            s,
            f"workflow.task.{what}",
            task["id"],
            {
                "task_id": task["id"],
                "instance_id": inst["id"],
                "definition_key": inst["definition_key"],
                "stage": task["stage"],
                "stage_index": task["stage_index"],
                "assignees": assignees,
                "scope": task["scope"],
                "due_at": _iso(task["due_at"]),
                "decision": task["decision"],
                "actor": task["actor"],
            },
            inst.get("correlation_id"),
        )

    async def _publish_sla(self, s: AsyncSession, inst: dict, task: dict, what: str, escalation: dict) -> None:
        await self.rt.outbox.add(
            s,
            f"workflow.sla.{what}",
            task["id"],
            {
                "task_id": task["id"],
                "instance_id": inst["id"],
                "definition_key": inst["definition_key"],
                "stage": task["stage"],
                "due_at": _iso(task["due_at"]),
                "escalation": escalation,
                "context": inst["context"],
                "subject": _subject(inst),
            },
            inst.get("correlation_id"),
        )


# ---------------------------------------------------------------------- pure helpers


def _validate_stage(st: dict[str, Any], where: str, known_calendars: set[str], errors: Errors) -> None:
    a = st.get("assignees") or {}
    roles, users = a.get("roles") or [], a.get("users") or []
    if not roles and not users:
        errors.add(f"{where}.assignees", "name at least one role or user")
    for i, r in enumerate(roles):
        if r not in ROLES:
            errors.add(f"{where}.assignees.roles[{i}]", f"unknown role {r!r} (one of {', '.join(ROLES)})")
        elif r == "analyst":
            errors.add(f"{where}.assignees.roles[{i}]", "analysts are read-only and cannot decide")
    seats = len(_seats_of(a))
    mode = st.get("mode", "any")
    if mode == "quorum":
        n = st.get("quorum")
        if n is None:
            errors.add(f"{where}.quorum", "is required when mode is quorum")
        elif n < 1 or n > seats:
            errors.add(f"{where}.quorum", f"must be between 1 and the number of assignees ({seats}); got {n}")
    elif st.get("quorum") is not None:
        errors.add(f"{where}.quorum", "is only allowed with mode quorum")
    sla = st.get("sla")
    if sla:
        if bool(sla.get("business_hours")) == bool(sla.get("deadline_from_context")):
            errors.add(f"{where}.sla", "give exactly one of business_hours or deadline_from_context")
        cal = sla.get("calendar")
        if cal and cal not in known_calendars:
            errors.add(f"{where}.sla.calendar", f"unknown calendar {cal!r}")
    esc = st.get("escalation") or {}
    if esc.get("reassign_to_role") and esc["reassign_to_role"] not in ROLES:
        errors.add(f"{where}.escalation.reassign_to_role", f"unknown role {esc['reassign_to_role']!r}")
    if esc and not sla:
        errors.add(f"{where}.escalation", "an escalation needs an sla to breach")
    if st.get("auto_approve") is not None:
        conditions.validate(st["auto_approve"], errors, f"{where}.auto_approve")


def _normalise_stage(st: dict[str, Any], calendar: str) -> dict[str, Any]:
    a = st.get("assignees") or {}
    out: dict[str, Any] = {
        "name": st["name"],
        "assignees": {
            "roles": list(a.get("roles") or []),
            "users": list(a.get("users") or []),
            "scope_from_context": list(a.get("scope_from_context") or []),
        },
        "mode": st.get("mode", "any"),
        "quorum": st.get("quorum"),
        "sla": None,
        "escalation": {k: v for k, v in (st.get("escalation") or {}).items() if v} or None,
        "auto_approve": st.get("auto_approve"),
    }
    if st.get("sla"):
        sla = st["sla"]
        out["sla"] = {
            "business_hours": str(sla["business_hours"]) if sla.get("business_hours") else None,
            "deadline_from_context": sla.get("deadline_from_context"),
            "calendar": sla.get("calendar") or calendar,
            "warn_at": str(sla.get("warn_at") or "0.75"),
        }
    return out


def _seats_of(assignees: dict[str, Any]) -> list[tuple[str, str]]:
    return [("user", u) for u in dict.fromkeys(assignees.get("users") or [])] + [
        ("role", r) for r in dict.fromkeys(assignees.get("roles") or [])
    ]


def _in_scope(who: Principal, scope: dict[str, str]) -> bool:
    """Role holders narrowed on a dimension see only its values; unnarrowed holders see all."""
    for dim, value in (scope or {}).items():
        allowed = who.scope_values(dim)
        if allowed is not None and value not in allowed:
            return False
    return True


def _hours(business_hours: Any) -> dt.timedelta:
    return dt.timedelta(seconds=float(Decimal(str(business_hours)) * 3600))


@contextmanager
def _stored_config(where: str) -> Iterator[None]:
    """Turn a CalendarError (a stored definition asking more business time than its calendar gives
    within calendars.HORIZON) into a 409 naming the stage's sla; the request's transaction rolls back."""
    try:
        yield
    except CalendarError as exc:
        raise Conflict(
            f"{where}: {exc}; publish a definition version or calendar that fits.",
            errors=[FieldError(where, str(exc), "unsatisfiable")],
        ) from exc


def _deadline(raw: Any, cal: BusinessCalendar, where: str, now: dt.datetime) -> dt.datetime:
    """A date means the end of that day in the calendar's time zone; a datetime is taken as is (in the
    calendar's zone without an offset). It must lie within shared.bounds and within HORIZON of now:
    the SLA's business time is counted day by day."""
    if raw in (None, ""):
        raise Invalid.on(where, "is required by this definition's SLA (a date or datetime)")
    text = str(raw)
    try:
        value: dt.date = (
            dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        )
    except ValueError as exc:
        raise Invalid.on(where, f"{text!r} is not an ISO date or datetime") from exc
    try:
        check_date(value)  # before any arithmetic: year 1 or 9999 plus a day or an offset overflows
    except ValueError as exc:
        raise Invalid.on(where, f"{text!r} {exc}") from exc
    if isinstance(value, dt.datetime):
        due = (value if value.tzinfo else value.replace(tzinfo=cal.tz)).astimezone(dt.UTC)
    else:
        due = dt.datetime.combine(value + dt.timedelta(days=1), dt.time(), tzinfo=cal.tz).astimezone(dt.UTC)
    if abs(due - now) > HORIZON:
        raise Invalid.on(where, f"{text!r} must lie within {HORIZON_YEARS} years of now")
    return due


def _sla_state(task: dict[str, Any], now: dt.datetime) -> str | None:
    """Open tasks: on_track | at_risk | breached. Closed ones: met | breached, or paused while changes are asked."""
    if task["due_at"] is None:
        return None
    if task["status"] != "open":
        if task["breached"]:
            return "breached"
        return "paused" if task["status"] == "changes_requested" else "met"
    if task["breached"] or now >= task["due_at"]:
        return "breached"
    if task["warned"] or (task["warn_at"] is not None and now >= task["warn_at"]):
        return "at_risk"
    return "on_track"


def _subject(inst: dict[str, Any]) -> dict[str, str]:
    return {"type": inst["subject_type"], "id": inst["subject_id"], "service": inst["subject_service"]}


def _instance_summary(inst: dict[str, Any]) -> dict[str, Any]:
    b, w = inst["cycle_time_business_seconds"], inst["cycle_time_seconds"]
    return {
        "id": inst["id"],
        "status": inst["status"],
        "definition_key": inst["definition_key"],
        "definition_version": inst["definition_version"],
        "subject": _subject(inst),
        "context": inst["context"],
        "requester": inst["requester"],
        "current_stage": inst["current_stage"],
        "sla_met": bool(inst["sla_met"]),
        "started_at": _iso(inst["started_at"]),
        "finished_at": _iso(inst["finished_at"]),
        "cycle_time_business_hours": round(b / 3600, 4) if b is not None else None,
        "cycle_time_hours": round(w / 3600, 4) if w is not None else None,
        "version": inst["version"],
    }


def _calendar_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "timezone": row["timezone"],
        "hours": row["hours"],
        "holidays": row["holidays"],
        "closed_dates": row["closed_dates"],
        "version": row["version"],
        "created_at": _iso(row["created_at"]),
    }


def _definition_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "version": row["version"],
        "name": row["name"],
        "description": row["description"],
        "trigger": row["trigger"],
        "calendar": row["calendar"],
        "stages": row["stages"],
        "created_at": _iso(row["created_at"]),
        "created_by": row["created_by"],
    }


def definition_view(row: dict[str, Any]) -> dict[str, Any]:
    return _definition_view(row)


def _pct(sorted_values: list[float], pct: float) -> float | None:
    """Percentile with linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    value = sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)
    return round(value, 4)
