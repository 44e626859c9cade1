"""SQLAlchemy tables of the notify service's own database.

The directory (people, their roles, teams, preferences), the messages to people (one row per event,
person and channel: the unique key is what makes "at most once" hold), the signed links sent in
them, and partner subscriptions with their deliveries and every attempt.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import JSONType, UTCDateTime, make_metadata
from shared.tables import attach

metadata = make_metadata()

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


infra = attach(metadata)


class Person(Base):
    """Someone Pitcrew may tell something: `id` is the subject of their token."""

    __tablename__ = "people"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    chat_handle: Mapped[str | None] = mapped_column(String(200), nullable=True)
    slack_webhook_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    teams_webhook_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, default="UTC")
    calendar: Mapped[str | None] = mapped_column(String(20), nullable=True)
    quiet_start: Mapped[str | None] = mapped_column(String(5), nullable=True)
    quiet_end: Mapped[str | None] = mapped_column(String(5), nullable=True)
    team: Mapped[str | None] = mapped_column(String(100), nullable=True)
    roles: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_people_team", "team"),)


class PersonRole(Base):
    """Who holds a role (kept with the person's `roles`): how a stage's roles resolve to people."""

    __tablename__ = "person_roles"

    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)

    __table_args__ = (Index("ix_person_roles_role", "role"),)


class Team(Base):
    """A team's chat channels (Slack and Teams incoming webhooks), used for members without their own."""

    __tablename__ = "teams"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    slack_webhook_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    teams_webhook_url: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Preference(Base):
    """How one person wants one kind of notification (`*`: every kind without its own row)."""

    __tablename__ = "preferences"

    person_id: Mapped[str] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), primary_key=True)
    channels: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    mode: Mapped[str] = mapped_column(String(20), nullable=False, default="immediate")
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Notification(Base):
    """One message to one person on one channel; the delivery queue is this table.

    `dedupe_key` is the event's id (or, for SLA warnings, the task: repeated warnings fold into one
    row, counted in `repeats`); (dedupe_key, person, channel) is unique. Rows held for a summary or a
    digest point at it through `bundle_id`."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(200), nullable=False)
    channel: Mapped[str] = mapped_column(String(10), nullable=False)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    event_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    dedupe_key: Mapped[str] = mapped_column(String(300), nullable=False)
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    facts: Mapped[list[Any]] = mapped_column(JSONType(), nullable=False, default=list)
    link: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    bundle_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    repeats: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("dedupe_key", "person_id", "channel", name="uq_notifications_once"),
        Index("ix_notifications_queue", "status", "due_at"),
        Index("ix_notifications_person", "person_id", "channel", "created_at"),
        Index("ix_notifications_bundle", "bundle_id"),
    )


class ActionLink(Base):
    """A signed approve/reject link: single use (`used_at`), expiring, for one person and task."""

    __tablename__ = "action_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_id: Mapped[str] = mapped_column(String(200), nullable=False)
    task_id: Mapped[str] = mapped_column(String(36), nullable=False)
    decision: Mapped[str] = mapped_column(String(10), nullable=False)
    notification_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class Subscription(Base):
    """A partner's webhook: the events it wants (globs) delivered to its URL, signed with its secret."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), nullable=False)
    url: Mapped[str] = mapped_column(String(1000), nullable=False)
    event_types: Mapped[list[str]] = mapped_column(JSONType(), nullable=False)
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    secret: Mapped[str] = mapped_column(String(100), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Delivery(Base):
    """One event for one subscription; `seq` orders them (per subject they go out in this order)."""

    __tablename__ = "deliveries"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False)
    event_id: Mapped[str] = mapped_column(String(100), nullable=False)
    event_type: Mapped[str] = mapped_column(String(200), nullable=False)
    subject_id: Mapped[str] = mapped_column(String(200), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    first_failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_deliveries_once"),
        Index("ix_deliveries_queue", "status", "seq"),
        Index("ix_deliveries_subscription", "subscription_id", "created_at"),
    )


class DeliveryAttempt(Base):
    """Each try of a delivery: the answer's status (none when unreachable) and how long it took."""

    __tablename__ = "delivery_attempts"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(36), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float, nullable=False)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "seq"),)


class KnownInstance(Base):
    """A workflow instance as its events told it (what it is about, its context, who asked): so a task's
    message can say what, how much and for whom without calling the workflow service."""

    __tablename__ = "known_instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    definition_key: Mapped[str | None] = mapped_column(String(100), nullable=True)
    subject: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False, default=dict)
    requester: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class KnownTask(Base):
    """A workflow task's current assignees (from its last `workflow.task.assigned`): who an SLA warning reaches."""

    __tablename__ = "known_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36), nullable=False)
    stage: Mapped[str | None] = mapped_column(String(200), nullable=True)
    roles: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    users: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    scope: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False, default=dict)
    due_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class KnownRequest(Base):
    """A work request as `workflow.request.submitted` told it (its number, title, requester): so a
    comment's or a deliverable's message says what it is about and reaches the requester."""

    __tablename__ = "known_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    title: Mapped[str | None] = mapped_column(String(300), nullable=True)
    requester: Mapped[str | None] = mapped_column(String(200), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
