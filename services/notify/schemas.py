"""Request and response models of the notify API (and the records its domain modules return)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.bounds import Instant
from shared.identity import ROLES
from shared.pagination import Page

Channel = Literal["email", "slack", "teams", "in_app"]
Mode = Literal["immediate", "digest"]
KINDS = (
    "task_assigned",
    "sla_warning",
    "sla_breached",
    "instance_finished",
    "threshold_crossed",
    "commitment_decided",
    "renewal_due",
    "target_at_risk",
    "anomaly_detected",
    "subscription_disabled",
    "request_commented",
    "deliverable_assigned",
    "deliverable_sla_warning",
    "deliverable_sla_breached",
    "deliverable_delivered",
    "deliverable_sent_back",
    "deliverable_accepted",
    "deliverable_started",
    "deliverable_approved",
    "deliverable_cancelled",
    "line_overspent",
    "integration_broken",
)
Kind = Literal[
    "task_assigned",
    "sla_warning",
    "sla_breached",
    "instance_finished",
    "threshold_crossed",
    "commitment_decided",
    "renewal_due",
    "target_at_risk",
    "anomaly_detected",
    "subscription_disabled",
    "request_commented",
    "deliverable_assigned",
    "deliverable_sla_warning",
    "deliverable_sla_breached",
    "deliverable_delivered",
    "deliverable_sent_back",
    "deliverable_accepted",
    "deliverable_started",
    "deliverable_approved",
    "deliverable_cancelled",
    "line_overspent",
    "integration_broken",
    "*",
]
HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_roles(values: list[str]) -> list[str]:
    unknown = [r for r in values if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    return list(dict.fromkeys(values))


def _check_scopes(values: list[str]) -> list[str]:
    for v in values:
        dim, sep, value = v.partition(":")
        if not (sep and dim and value) or len(v) > 200:
            raise ValueError(f"{v!r} is not a scope such as region:EMEA")
    return list(dict.fromkeys(values))


class PersonFields(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    chat_handle: str | None = Field(default=None, max_length=200)
    slack_webhook_url: str | None = Field(default=None, max_length=1000)
    teams_webhook_url: str | None = Field(default=None, max_length=1000)
    timezone: str = Field(default="UTC", max_length=64)
    calendar: str | None = Field(
        default=None, max_length=20, description="public holidays of a country (DE, US-CA): quiet all day"
    )
    quiet_hours: QuietHours | None = None
    team: str | None = Field(default=None, max_length=100)
    roles: list[str] = Field(default_factory=list, max_length=len(ROLES))
    scopes: list[str] = Field(default_factory=list, max_length=50)
    active: bool = True

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not EMAIL.match(v):
            raise ValueError("is not an e-mail address")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{v!r} is not an IANA time zone such as Europe/Berlin") from exc
        return v

    @field_validator("calendar")
    @classmethod
    def _calendar(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import holidays

        country, _, sub = v.upper().partition("-")
        try:
            holidays.country_holidays(country, subdiv=sub or None)
        except NotImplementedError as exc:
            raise ValueError(f"{v!r} is not a country (and subdivision) the holidays calendar knows") from exc
        return v.upper()

    _roles = field_validator("roles")(classmethod(lambda cls, v: _check_roles(v)))
    _scopes = field_validator("scopes")(classmethod(lambda cls, v: _check_scopes(v)))


class QuietHours(Strict):
    """No message goes out between `start` and `end` (the person's own time); it waits until `end`."""

    start: str = Field(pattern=HHMM.pattern, examples=["20:00"])
    end: str = Field(pattern=HHMM.pattern, examples=["08:00"])

    @model_validator(mode="after")
    def _differs(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


PersonFields.model_rebuild()


class PersonIn(PersonFields):
    id: str = Field(min_length=1, max_length=200, description="the subject of the person's token")


class PersonOut(BaseModel):
    id: str
    name: str
    email: str | None
    chat_handle: str | None
    slack_webhook_url: str | None
    teams_webhook_url: str | None
    timezone: str
    calendar: str | None
    quiet_hours: QuietHours | None
    team: str | None
    roles: list[str]
    scopes: list[str]
    active: bool
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


PersonPage = Page[PersonOut]


class ImportResult(BaseModel):
    created: int
    updated: int
    people: list[str]


class TeamIn(Strict):
    slack_webhook_url: str | None = Field(default=None, max_length=1000)
    teams_webhook_url: str | None = Field(default=None, max_length=1000)


class TeamOut(TeamIn):
    model_config = ConfigDict(extra="ignore")
    name: str


def _default_channels() -> list[Channel]:
    return ["email", "in_app"]


class PreferenceIn(Strict):
    kind: Kind
    channels: list[Channel] = Field(default_factory=_default_channels, max_length=4)
    mode: Mode = "immediate"
    enabled: bool = True


class Preferences(Strict):
    items: list[PreferenceIn] = Field(max_length=len(KINDS) + 1)

    @model_validator(mode="after")
    def _once(self) -> Preferences:
        kinds = [p.kind for p in self.items]
        if len(set(kinds)) != len(kinds):
            raise ValueError("name each kind once")
        return self


class InboxItem(BaseModel):
    id: str
    kind: str
    title: str
    facts: list[list[str]]
    link: str | None
    repeats: int
    created_at: dt.datetime
    read_at: dt.datetime | None


InboxPage = Page[InboxItem]


class SubscriptionIn(Strict):
    url: str = Field(min_length=1, max_length=1000)
    event_types: list[str] = Field(min_length=1, max_length=50, examples=[["budget.commitment.*"]])
    description: str | None = Field(default=None, max_length=500)

    @field_validator("event_types")
    @classmethod
    def _globs(cls, values: list[str]) -> list[str]:
        for v in values:
            if not re.fullmatch(r"[a-z0-9_*]+(\.[a-z0-9_*>]+)*", v) or len(v) > 200:
                raise ValueError(f"{v!r} is not an event type or glob such as budget.commitment.*")
        return list(dict.fromkeys(values))


class SubscriptionOut(BaseModel):
    id: str
    owner: str
    url: str
    event_types: list[str]
    description: str | None
    status: str
    disabled_reason: str | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="shown once: verify the webhook-signature of each delivery with it")


SubscriptionPage = Page[SubscriptionOut]


class AttemptOut(BaseModel):
    at: dt.datetime
    status_code: int | None
    latency_ms: float
    error: str | None


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    subject_id: str
    status: str
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    next_attempt_at: dt.datetime | None
    log: list[AttemptOut]


DeliveryPage = Page[DeliveryOut]


class RedeliverIn(Strict):
    """One delivery (`delivery_id`) or every delivery created in [`from`, `to`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    delivery_id: str | None = Field(default=None, max_length=36)
    from_: Instant | None = Field(default=None, alias="from")
    to: Instant | None = None

    @model_validator(mode="after")
    def _one_or_range(self) -> RedeliverIn:
        if (self.delivery_id is None) == (self.from_ is None or self.to is None):
            raise ValueError("give either delivery_id or both from and to")
        if self.from_ is not None and self.to is not None and self.to <= self.from_:
            raise ValueError("to must be after from")
        return self


class Redelivered(BaseModel):
    redelivered: int
