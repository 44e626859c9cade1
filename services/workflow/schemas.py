"""Request and response models of the workflow API.

Pydantic checks shapes and types; the rules that need the database or span fields
(known calendars, quorum vs assignees, condition trees) are checked by the engine,
which reports all of them at once.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from services.workflow.events import InstanceStatus, Timestamp
from shared.bounds import Version

KEY = r"^[a-z0-9][a-z0-9._-]{0,99}$"
Name = Field(min_length=1, max_length=200)
MAX_DEPTH = 32  # nesting of free JSON (context, conditions); the outbox's encoder stops at 255
MAX_SLA_HOURS = 8760  # a year of round-the-clock time; longer is a typo (and must also fit calendars.HORIZON)


# JSON numbers beyond 2**53 are not exact across systems (a double's 53-bit mantissa): orjson reads
# 1e20 as a float, JSONB keeps it exact and hands back an int orjson cannot encode (>= 2**64).
MAX_JSON_NUMBER = 2**53
_MAX_REPORTED = 20  # problems named per value; the rest are implied


def json_problems(value: Any, max_depth: int = MAX_DEPTH) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for each part of free JSON no store or event can hold: nesting deeper than
    `max_depth`, a number not finite or of magnitude 2**53 or more, a NUL character or lone surrogate in
    text or a key, a value that is not JSON. Iterative (no recursion) and linear in the value's size;
    stops after a few problems. The path () is the value itself."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack and len(out) < _MAX_REPORTED:
        item, path = stack.pop()
        if isinstance(item, dict | list):
            if len(path) >= max_depth:
                out.append(((), f"nests deeper than {max_depth} levels of objects and arrays"))
                break
            if isinstance(item, dict):
                for key, child in item.items():
                    why = _bad_text(key) if isinstance(key, str) else "that is not text"
                    if why:
                        out.append((path, f"has a key that {why}" if isinstance(key, str) else f"has a key {why}"))
                    else:
                        stack.append((child, (*path, key)))
            else:
                stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif isinstance(item, str):
            why = _bad_text(item)
            if why:
                out.append((path, why))
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_JSON_NUMBER < item < MAX_JSON_NUMBER:
                out.append(
                    (
                        path,
                        "must be a number of magnitude below 2^53 (9007199254740992); "
                        "send larger or exact amounts as text",
                    )
                )
        elif isinstance(item, float):
            if not math.isfinite(item) or not -MAX_JSON_NUMBER < item < MAX_JSON_NUMBER:
                out.append(
                    (
                        path,
                        "must be a finite number of magnitude below 2^53 (9007199254740992); "
                        "send larger or exact amounts as text",
                    )
                )
        else:
            out.append((path, f"is not a JSON value ({type(item).__name__})"))
    return out


def _bad_text(text: str) -> str | None:
    """Why `text` cannot be stored (PostgreSQL refuses NUL; a lone surrogate encodes nowhere), or None."""
    if "\x00" in text:
        return "contains the NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            return "contains a lone surrogate, which is not text"
    return None


def field_name(where: str, path: tuple[str | int, ...]) -> str:
    """('context', ('dimensions', 'n')) -> 'context.dimensions.n' (list indexes as numbers, like pydantic)."""
    return ".".join([where, *map(str, path)]) if where else ".".join(map(str, path))


def _shallow(value: Any) -> Any:
    """Refuse free JSON no store or event can hold (json_problems), each problem at its own path so
    the 422 names e.g. context.n."""
    problems = json_problems(value)
    if problems:
        raise ValidationError.from_exception_data(
            "json",
            [
                InitErrorDetails(type=PydanticCustomError("json_value", message), loc=path, input=value)
                for path, message in problems
            ],
        )
    return value


User = Annotated[str, Field(min_length=1, max_length=200)]  # a seat's user: task_seats.value is VARCHAR(200)
Json = Annotated[Any, AfterValidator(_shallow)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_shallow)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HolidaysIn(Strict):
    country: str | None = Field(default=None, min_length=2, max_length=3, description="ISO country, e.g. DE")
    subdivision: str | None = Field(default=None, max_length=10, description="e.g. BE for Berlin")


class CalendarIn(Strict):
    key: str = Field(pattern=KEY)
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Berlin")
    hours: JsonObject = Field(description='weekday -> ["09:00", "17:00"] or a list of such pairs')
    holidays: HolidaysIn = Field(default_factory=HolidaysIn)
    closed_dates: list[str] = Field(default_factory=list, max_length=1000)


class AssigneesIn(Strict):
    roles: list[str] = Field(default_factory=list, max_length=20)
    users: list[User] = Field(default_factory=list, max_length=50)
    scope_from_context: list[str] = Field(
        default_factory=list,
        max_length=5,
        description="Context fields (e.g. region) narrowing role assignees to holders of that scope",
    )


class SlaIn(Strict):
    business_hours: Decimal | None = Field(default=None, gt=0, le=MAX_SLA_HOURS)
    deadline_from_context: str | None = Field(default=None, min_length=1, max_length=100)
    calendar: str | None = None
    warn_at: Decimal = Field(default=Decimal("0.75"), gt=0, lt=1)


class EscalationIn(Strict):
    reassign_to_role: str | None = None
    add_approver: str | None = Field(default=None, min_length=1, max_length=200)
    notify: list[str] = Field(default_factory=list, max_length=20)


class StageIn(Strict):
    name: str = Name
    assignees: AssigneesIn
    mode: Literal["any", "all", "quorum"] = "any"
    quorum: int | None = None
    sla: SlaIn | None = None
    escalation: EscalationIn | None = None
    auto_approve: Json = Field(default=None, description="A condition; when it holds the stage approves itself")


class TriggerIn(Strict):
    event: str = Field(min_length=1, max_length=200)
    conditions: Json = Field(default_factory=list)
    priority: int = Field(default=0, ge=-1000, le=1000)


class DefinitionIn(Strict):
    key: str = Field(pattern=KEY)
    name: str = Name
    description: str | None = Field(default=None, max_length=2000)
    calendar: str | None = Field(default=None, description="For cycle times; stages default to it too")
    trigger: TriggerIn | None = None
    stages: list[StageIn] = Field(max_length=50)


class SubjectIn(Strict):
    type: str = Field(min_length=1, max_length=100)
    id: str = Field(min_length=1, max_length=200)
    service: str = Field(min_length=1, max_length=100)


class InstanceIn(Strict):
    definition_key: str = Field(min_length=1, max_length=100)
    definition_version: Version | None = None
    subject: SubjectIn
    context: JsonObject = Field(default_factory=dict)


class CommentIn(Strict):
    comment: str | None = Field(default=None, max_length=4000)


class CommentRequired(Strict):
    comment: str = Field(min_length=1, max_length=4000)


class DelegateIn(Strict):
    to_user: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=4000)


class ResubmitIn(Strict):
    context: JsonObject | None = Field(default=None, description="Fields merged into the context")
    comment: str | None = Field(default=None, max_length=4000)


# --- answers -----------------------------------------------------------------------------------
# Instants are ISO 8601 with their offset (`+00:00`), as the service has always answered.


class CalendarOut(BaseModel):
    id: str
    key: str
    timezone: str
    hours: dict[str, Any]
    holidays: dict[str, Any] = Field(description="country and subdivision, when given")
    closed_dates: list[str]
    version: int
    created_at: Timestamp


class CalendarPage(BaseModel):
    items: list[CalendarOut]
    next_cursor: str | None


class DefinitionOut(BaseModel):
    id: str
    key: str
    version: int
    name: str
    description: str | None
    trigger: dict[str, Any] | None = Field(description="event, conditions, priority")
    calendar: str
    stages: list[dict[str, Any]] = Field(
        description="name, assignees, mode, quorum, sla, escalation, auto_approve (every key, normalised)"
    )
    created_at: Timestamp
    created_by: str


class DefinitionPage(BaseModel):
    items: list[DefinitionOut]
    next_cursor: str | None


class SubjectOut(BaseModel):
    type: str
    id: str
    service: str


class InstanceSummary(BaseModel):
    id: str
    status: InstanceStatus
    definition_key: str
    definition_version: int
    subject: SubjectOut
    context: dict[str, Any]
    requester: str
    current_stage: int
    sla_met: bool
    started_at: Timestamp
    finished_at: Timestamp | None
    cycle_time_business_hours: float | None
    cycle_time_hours: float | None
    version: int = Field(description="send it back as If-Match to resubmit or cancel only this state")


class ApprovalOut(BaseModel):
    actor: str
    at: Timestamp


class AssigneesOut(BaseModel):
    roles: list[str]
    users: list[str]


class TaskOut(BaseModel):
    id: str
    instance_id: str
    definition_key: str
    subject: SubjectOut
    requester: str
    stage: str
    stage_index: int
    status: str = Field(description="open | approved | rejected | changes_requested | cancelled")
    mode: str
    required_approvals: int
    approvals: list[ApprovalOut]
    assignees: AssigneesOut
    scope: dict[str, str]
    calendar: str
    warn_at: Timestamp | None
    due_at: Timestamp | None
    remaining_business_minutes: int | None
    sla_state: str | None = Field(description="on_track | at_risk | breached; closed: met | breached | paused")
    escalated: bool
    decision: str | None
    actor: str | None
    created_at: Timestamp
    completed_at: Timestamp | None


class StageOut(BaseModel):
    index: int
    name: str
    mode: str
    status: str = Field(description="the status of its latest task, else auto_approved | pending")
    sla: dict[str, Any] | None
    escalation: dict[str, Any] | None


class HistoryOut(BaseModel):
    seq: int
    at: Timestamp
    actor: str
    action: str
    task_id: str | None
    stage: str | None
    comment: str | None
    detail: dict[str, Any]


class InstanceOut(InstanceSummary):
    tasks: list[TaskOut]
    stages: list[StageOut]
    history: list[HistoryOut]


class InstancePage(BaseModel):
    items: list[InstanceSummary]
    next_cursor: str | None


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None


class CommentOut(BaseModel):
    seq: int
    instance_id: str
    actor: str
    comment: str


class Percentiles(BaseModel):
    median: float | None
    p90: float | None


class StageBreaches(BaseModel):
    stage: str
    tasks: int
    breaches: int
    attainment_pct: float | None = Field(default=None, description="share of the stage's tasks within their SLA")
    cycle_time_business_hours: Percentiles = Field(
        default_factory=lambda: Percentiles(median=None, p90=None),
        description="from a task's assignment to its completion, in its calendar's business hours",
    )


class SlaReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    definition: str | None
    from_: Timestamp | None = Field(alias="from")
    to: Timestamp | None
    count: int
    outcomes: dict[str, int]
    cycle_time_business_hours: Percentiles
    cycle_time_hours: Percentiles
    sla_attainment_pct: float | None
    breaches_per_stage: list[StageBreaches] = Field(description="most breaches first")
