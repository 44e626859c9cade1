"""Request and response models of the workflow API.

Pydantic checks shapes and types; the rules that need the database or span fields
(known calendars, quorum vs assignees, condition trees) are checked by the engine,
which reports all of them at once.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

KEY = r"^[a-z0-9][a-z0-9._-]{0,99}$"
Name = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HolidaysIn(Strict):
    country: str | None = Field(default=None, min_length=2, max_length=3, description="ISO country, e.g. DE")
    subdivision: str | None = Field(default=None, max_length=10, description="e.g. BE for Berlin")


class CalendarIn(Strict):
    key: str = Field(pattern=KEY)
    timezone: str = Field(min_length=1, max_length=64, description="IANA time zone, e.g. Europe/Berlin")
    hours: dict[str, Any] = Field(description='weekday -> ["09:00", "17:00"] or a list of such pairs')
    holidays: HolidaysIn = Field(default_factory=HolidaysIn)
    closed_dates: list[str] = Field(default_factory=list, max_length=1000)


class AssigneesIn(Strict):
    roles: list[str] = Field(default_factory=list, max_length=20)
    users: list[str] = Field(default_factory=list, max_length=50)
    scope_from_context: list[str] = Field(
        default_factory=list, max_length=5,
        description="Context fields (e.g. region) narrowing role assignees to holders of that scope",
    )


class SlaIn(Strict):
    business_hours: Decimal | None = Field(default=None, gt=0, le=100000)
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
    auto_approve: Any = Field(default=None, description="A condition; when it holds the stage approves itself")


class TriggerIn(Strict):
    event: str = Field(min_length=1, max_length=200)
    conditions: Any = Field(default_factory=list)
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
    definition_version: int | None = Field(default=None, ge=1)
    subject: SubjectIn
    context: dict[str, Any] = Field(default_factory=dict)


class CommentIn(Strict):
    comment: str | None = Field(default=None, max_length=4000)


class CommentRequired(Strict):
    comment: str = Field(min_length=1, max_length=4000)


class DelegateIn(Strict):
    to_user: str = Field(min_length=1, max_length=200)
    comment: str | None = Field(default=None, max_length=4000)


class ResubmitIn(Strict):
    context: dict[str, Any] | None = Field(default=None, description="Fields merged into the context")
    comment: str | None = Field(default=None, max_length=4000)
