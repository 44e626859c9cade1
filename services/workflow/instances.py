"""The instance state machine: typed records of an instance and its tasks, and the transitions
between their states as pure functions (no database), so unit tests drive them directly.

    running --approve last stage--> approved          running --reject--> rejected
    running --request changes--> changes_requested --resubmit--> running
    running | changes_requested --cancel--> cancelled

Every transition returns a new record one version on (the version is the instance's ETag);
`store.save` writes what changed. Who may take a transition is decided here too (four eyes,
scopes, requester), so each rule has one home.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from services.workflow import conditions
from services.workflow.events import FinalStatus, InstanceStatus
from shared.errors import Conflict, Forbidden, Invalid
from shared.identity import Principal

FINISHED: tuple[FinalStatus, ...] = ("approved", "rejected", "cancelled")
SYSTEM = "system"  # the actor of what the workflow does by itself (auto-approval, SLA, finishing)

TaskStatus = Literal["open", "approved", "rejected", "changes_requested", "cancelled"]
SlaState = Literal["on_track", "at_risk", "breached", "met", "paused"]
Seat = tuple[str, str]  # (user | role, value)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Instance:
    """One row of `instances`."""

    id: str
    definition_id: str
    definition_key: str
    definition_version: int
    subject_type: str
    subject_id: str
    subject_service: str
    context: dict[str, Any]
    requester: str
    status: InstanceStatus
    current_stage: int
    sla_met: bool
    started_at: dt.datetime
    finished_at: dt.datetime | None
    cycle_time_business_seconds: int | None
    cycle_time_seconds: int | None
    version: int
    correlation_id: str | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Instance:
        return cls(**{f: row[f] for f in _INSTANCE_FIELDS})

    def row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _INSTANCE_FIELDS}

    @property
    def subject(self) -> dict[str, str]:
        return {"type": self.subject_type, "id": self.subject_id, "service": self.subject_service}

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, slots=True)
class Task:
    """One row of `tasks`: a stage's turn, with its SLA clock."""

    id: str
    instance_id: str
    stage_index: int
    stage: str
    status: TaskStatus
    mode: str
    required: int
    scope: dict[str, str]
    calendar: str
    sla_seconds: int | None
    warn_at: dt.datetime | None
    due_at: dt.datetime | None
    warned: bool
    breached: bool
    escalated: bool
    decision: str | None
    actor: str | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    paused_remaining_seconds: int | None
    paused_warn_seconds: int | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Task:
        return cls(**{f: row[f] for f in _TASK_FIELDS})

    def row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _TASK_FIELDS}


_INSTANCE_FIELDS = tuple(f.name for f in dataclasses.fields(Instance))
_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(Task))


# --- transitions of an instance ----------------------------------------------------------------


def changed(inst: Instance, **values: Any) -> Instance:
    """The instance with `values`, one version on."""
    return dataclasses.replace(inst, **values, version=inst.version + 1)


def started(
    *,
    definition_id: str,
    definition_key: str,
    definition_version: int,
    subject: Mapping[str, str],
    context: dict[str, Any],
    requester: str,
    now: dt.datetime,
    correlation_id: str | None = None,
    instance_id: str | None = None,
) -> Instance:
    return Instance(
        id=instance_id or new_id(),
        definition_id=definition_id,
        definition_key=definition_key,
        definition_version=definition_version,
        subject_type=subject["type"],
        subject_id=str(subject["id"]),
        subject_service=subject["service"],
        context=context,
        requester=requester,
        status="running",
        current_stage=0,
        sla_met=True,
        started_at=now,
        finished_at=None,
        cycle_time_business_seconds=None,
        cycle_time_seconds=None,
        version=1,
        correlation_id=correlation_id,
    )


def finish(inst: Instance, status: FinalStatus, now: dt.datetime, business: dt.timedelta) -> Instance:
    """approved | rejected | cancelled, with its cycle times (business time from the definition's calendar)."""
    if inst.finished:
        raise Conflict(f"The instance is already {inst.status}.")
    return changed(
        inst,
        status=status,
        finished_at=now,
        cycle_time_business_seconds=int(business.total_seconds()),
        cycle_time_seconds=int((now - inst.started_at).total_seconds()),
    )


def pause(inst: Instance) -> Instance:
    """An assignee asked for changes: the instance waits for its requester."""
    if inst.status != "running":
        raise Conflict(f"Only a running instance can wait for changes; this one is {inst.status}.")
    return changed(inst, status="changes_requested")


def rework(inst: Instance, who: Principal, patch: Mapping[str, Any] | None) -> Instance:
    """The requester (or an admin) reworks a paused request, optionally changing its context within
    their scopes as it is and as it will be (a change of context is a version of its own)."""
    if inst.status != "changes_requested":
        raise Conflict(f"Only an instance with changes requested can be resubmitted; this one is {inst.status}.")
    if who.subject != inst.requester and not who.has_role("admin"):
        raise Forbidden("Only the requester may resubmit.")
    if patch:
        context = {**inst.context, **patch}
        if not who.may_change(inst.context, context):
            raise Forbidden(
                f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover the request as it is "
                "or as this change would make it."
            )
        inst = changed(inst, context=context)
    return changed(inst, status="running")


def check_cancel(inst: Instance, who: Principal) -> None:
    """The requester, or mops and admins within their scopes, may withdraw an unfinished request."""
    if who.subject != inst.requester and not who.has_role("admin", "mops"):
        raise Forbidden("Only the requester, mops or an admin may cancel an instance.")
    if who.subject != inst.requester and not who.may_see(inst.context):
        raise Forbidden(f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover this request's context.")
    if inst.finished:
        raise Conflict(f"The instance is already {inst.status}.")


def check_open(inst: Instance, task: Task) -> None:
    """Only an open task of an unfinished instance can be acted on."""
    if inst.finished:
        raise Conflict(f"The instance is already {inst.status}; its tasks are closed.")
    if task.status != "open":
        raise Conflict(f"The task is {task.status}; only an open task can be acted on.")


def check_decider(inst: Instance, who: Principal) -> None:
    """Four eyes, and scopes: the requester never decides; a decider's scopes cover the context."""
    if who.subject == inst.requester:
        raise Forbidden("Four eyes: the requester cannot decide on their own request.")
    if not who.may_see(inst.context):
        raise Forbidden(
            f"Your scopes ({', '.join(sorted(who.scopes))}) do not cover this request's context; "
            "someone whose scopes do must decide it."
        )


def check_delegate(inst: Instance, who: Principal, to_user: str) -> None:
    if to_user == inst.requester:
        raise Invalid.on("to_user", "cannot be the requester (four eyes)")
    if to_user == who.subject:
        raise Invalid.on("to_user", "must be someone else")


# --- stages and seats --------------------------------------------------------------------------


def next_stage(stages: list[dict[str, Any]], index: int, context: dict[str, Any]) -> tuple[int, list[str]]:
    """The first stage from `index` whose auto_approve condition does not hold, and the names of those
    skipped; `len(stages)` when none is left (the instance is approved)."""
    skipped: list[str] = []
    while (
        index < len(stages)
        and stages[index].get("auto_approve") is not None
        and conditions.evaluate(stages[index]["auto_approve"], context)
    ):
        skipped.append(stages[index]["name"])
        index += 1
    return index, skipped


def seats_of(assignees: Mapping[str, Any]) -> list[Seat]:
    """A stage's seats: each named user, then each role (one seat, filled by any holder)."""
    return [("user", u) for u in dict.fromkeys(assignees.get("users") or [])] + [
        ("role", r) for r in dict.fromkeys(assignees.get("roles") or [])
    ]


def required_approvals(stage: Mapping[str, Any], seats: int) -> int:
    mode = stage["mode"]
    if mode == "all":
        return seats
    if mode == "quorum":
        return int(stage.get("quorum") or 1)
    return 1


def task_scope(stage: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, str]:
    """The context's values of the stage's scope_from_context dimensions (absent or empty ones narrow nothing)."""
    return {
        d: str(context[d]) for d in stage["assignees"].get("scope_from_context", []) if context.get(d) not in (None, "")
    }


def in_scope(who: Principal, scope: Mapping[str, str]) -> bool:
    """Role holders narrowed on a dimension see only its values; unnarrowed holders see all."""
    for dim, value in (scope or {}).items():
        allowed = who.scope_values(dim)
        if allowed is not None and value not in allowed:
            return False
    return True


def my_seats(seats: list[tuple[int, str, str]], task: Task, who: Principal) -> list[int]:
    """The active seats (seat, kind, value) of a task `who` may fill: their user, or a role they hold in scope."""
    out = {
        seat
        for seat, kind, value in seats
        if (kind == "user" and value == who.subject)
        or (kind == "role" and value in who.roles and in_scope(who, task.scope))
    }
    return sorted(out)


def sla_state(task: Task, now: dt.datetime) -> SlaState | None:
    """Open tasks: on_track | at_risk | breached. Closed ones: met | breached, or paused while changes are asked."""
    if task.due_at is None:
        return None
    if task.status != "open":
        if task.breached:
            return "breached"
        return "paused" if task.status == "changes_requested" else "met"
    if task.breached or now >= task.due_at:
        return "breached"
    if task.warned or (task.warn_at is not None and now >= task.warn_at):
        return "at_risk"
    return "on_track"
