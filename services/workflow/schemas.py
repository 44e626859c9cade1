"""Request and response models of the workflow API.

Pydantic checks shapes and types; the rules that need the database or span fields
(known calendars, quorum vs assignees, condition trees) are checked by the engine,
which reports all of them at once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.bounds import Version

KEY = r"^[a-z0-9][a-z0-9._-]{0,99}$"
Name = Field(min_length=1, max_length=200)
MAX_DEPTH = 32  # nesting of free JSON (context, conditions); the outbox's encoder stops at 255
MAX_SLA_HOURS = 8760  # a year of round-the-clock time; longer is a typo (and must also fit calendars.HORIZON)


def _shallow(value: Any) -> Any:
    """Refuse JSON nested deeper than MAX_DEPTH objects/arrays (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"nests deeper than {MAX_DEPTH} levels of objects and arrays")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
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
        default_factory=list, max_length=5,
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
