"""SQLAlchemy tables of the workflow service's own database.

Definitions and calendars are configuration (JSON documents validated by the engine);
instances, tasks and seats are the running state; `history` is append-only (the
migration adds triggers that refuse UPDATE and DELETE on both backends).
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase

from shared.db import JSONType, UTCDateTime, make_metadata
from shared.tables import BigId, attach

metadata = make_metadata()


class Base(DeclarativeBase):
    metadata = metadata


infra = attach(metadata)

calendars = Table(
    "calendars",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("key", String(100), nullable=False, unique=True),
    Column("timezone", String(64), nullable=False),
    Column("hours", JSONType(), nullable=False),
    Column("holidays", JSONType(), nullable=False),
    Column("closed_dates", JSONType(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

definitions = Table(
    "definitions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("trigger", JSONType(), nullable=True),
    Column("trigger_event", String(200), nullable=True),
    Column("priority", Integer, nullable=False, default=0),
    Column("calendar", String(100), nullable=False),
    Column("stages", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("key", "version"),
)
Index("ix_definitions_trigger_event", definitions.c.trigger_event)

instances = Table(
    "instances",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("definition_id", String(36), ForeignKey("definitions.id"), nullable=False),
    Column("definition_key", String(100), nullable=False),
    Column("definition_version", Integer, nullable=False),
    Column("subject_type", String(100), nullable=False),
    Column("subject_id", String(200), nullable=False),
    Column("subject_service", String(100), nullable=False),
    Column("context", JSONType(), nullable=False),
    Column("requester", String(200), nullable=False),
    Column("status", String(30), nullable=False),
    Column("current_stage", Integer, nullable=False, default=0),
    Column("sla_met", Boolean, nullable=False, default=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("cycle_time_business_seconds", Integer, nullable=True),
    Column("cycle_time_seconds", Integer, nullable=True),
    Column("version", Integer, nullable=False),
    Column("correlation_id", String(100), nullable=True),
)
Index("ix_instances_started", instances.c.started_at, instances.c.id)
Index("ix_instances_finished", instances.c.definition_key, instances.c.finished_at)
Index("ix_instances_subject", instances.c.subject_service, instances.c.subject_type, instances.c.subject_id)

tasks = Table(
    "tasks",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("instance_id", String(36), ForeignKey("instances.id"), nullable=False),
    Column("stage_index", Integer, nullable=False),
    Column("stage", String(200), nullable=False),
    # open -> approved | rejected | changes_requested | cancelled
    Column("status", String(30), nullable=False),
    Column("mode", String(10), nullable=False),
    Column("required", Integer, nullable=False),
    Column("scope", JSONType(), nullable=False),
    Column("calendar", String(100), nullable=False),
    Column("sla_seconds", Integer, nullable=True),
    Column("warn_at", UTCDateTime, nullable=True),
    Column("due_at", UTCDateTime, nullable=True),
    Column("warned", Boolean, nullable=False, default=False),
    Column("breached", Boolean, nullable=False, default=False),
    Column("escalated", Boolean, nullable=False, default=False),
    # Business time left when the clock paused for requested changes (resumed on resubmit).
    Column("paused_remaining_seconds", Integer, nullable=True),
    Column("paused_warn_seconds", Integer, nullable=True),
    Column("decision", String(30), nullable=True),
    Column("actor", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
)
Index("ix_tasks_instance", tasks.c.instance_id, tasks.c.stage_index)
Index("ix_tasks_open_due", tasks.c.status, tasks.c.due_at)

# Who may act on a task: one row per seat (a role or a user), plus delegated users.
# A decision fills one seat; `any` needs 1, `quorum` n, `all` every seat.
task_seats = Table(
    "task_seats",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("task_id", String(36), ForeignKey("tasks.id"), nullable=False),
    Column("seat", Integer, nullable=False),
    Column("kind", String(10), nullable=False),  # role | user
    Column("value", String(200), nullable=False),
    Column("delegated_by", String(200), nullable=True),
    Column("active", Boolean, nullable=False, default=True),
)
Index("ix_task_seats_lookup", task_seats.c.kind, task_seats.c.value, task_seats.c.active)
Index("ix_task_seats_task", task_seats.c.task_id)

approvals = Table(
    "approvals",
    metadata,
    Column("task_id", String(36), ForeignKey("tasks.id"), primary_key=True),
    Column("seat", Integer, primary_key=True),
    Column("actor", String(200), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    UniqueConstraint("task_id", "actor"),
)

history = Table(
    "history",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("instance_id", String(36), ForeignKey("instances.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(50), nullable=False),
    Column("task_id", String(36), nullable=True),
    Column("stage", String(200), nullable=True),
    Column("comment", Text, nullable=True),
    Column("detail", JSONType(), nullable=False),
)
Index("ix_history_instance", history.c.instance_id, history.c.seq)

# Request types: an intake form (JSON Schema) and the definition a request of the type starts,
# published in versions like definitions (a request pins the version it was validated against).
request_types = Table(
    "request_types",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("key", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("form", JSONType(), nullable=False),
    Column("definition_key", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("key", "version"),
)

requests = Table(
    "requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("number", String(30), nullable=False, unique=True),
    Column("request_type_id", String(36), ForeignKey("request_types.id"), nullable=False),
    Column("type_key", String(100), nullable=False),
    Column("type_version", Integer, nullable=False),
    Column("title", String(200), nullable=False),
    Column("data", JSONType(), nullable=False),
    Column("requester", String(200), nullable=False),
    Column("instance_id", String(36), ForeignKey("instances.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_requests_created", requests.c.created_at, requests.c.id)
Index("ix_requests_type", requests.c.type_key, requests.c.created_at)

# The last request number given out per year: one row per year, bumped in the submitting
# transaction (a row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so numbers never repeat.
request_counters = Table(
    "request_counters",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last", Integer, nullable=False),
)

# What a request promises: each deliverable is assigned to an internal team (an owner acts for it;
# its SLA is an OLA) or to a supplier (the supplier's principals act; an underpinning contract), and is
# due in business time on the assignee's calendar. Its SLA timers (warning, breach) live in the timers
# table; the clock pauses while a delivery waits on the requester (paused_* keep what was left).
deliverables = Table(
    "deliverables",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("request_id", String(36), ForeignKey("requests.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=True),
    Column("team", String(100), nullable=True),
    Column("supplier_id", String(36), nullable=True),
    Column("sla_kind", String(30), nullable=False, server_default="ola"),  # ola | underpinning_contract
    # open -> accepted -> in_progress -> delivered (-> in_review) -> done; back to in_progress (sent back); -> cancelled
    Column("status", String(20), nullable=False),
    Column("calendar", String(100), nullable=False),
    Column("business_hours", String(20), nullable=True),
    Column("due_at", UTCDateTime, nullable=False),
    Column("warn_at", UTCDateTime, nullable=True),
    Column("sla_seconds", Integer, nullable=True),
    Column("warned", Boolean, nullable=False, server_default=false()),
    Column("breached", Boolean, nullable=False, server_default=false()),
    Column("escalated", Boolean, nullable=False, server_default=false()),
    Column("escalation", JSONType(), nullable=True),
    Column("paused_remaining_seconds", Integer, nullable=True),
    Column("paused_warn_seconds", Integer, nullable=True),
    Column("rework_rounds", Integer, nullable=False, server_default="0"),
    Column("link", String(2000), nullable=True),
    Column("attachment_id", String(36), nullable=True),  # the file delivered (an attachment of the request)
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("version", Integer, nullable=False),
)
Index("ix_deliverables_request", deliverables.c.request_id, deliverables.c.created_at)
Index("ix_deliverables_supplier", deliverables.c.supplier_id, deliverables.c.due_at)
Index("ix_deliverables_due", deliverables.c.due_at)

# Supplier organisations: their contacts and the business calendar their deliverables are due on.
# A principal with the `supplier` role and the scope `supplier:<id>` acts for one.
suppliers = Table(
    "suppliers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("calendar", String(100), nullable=False),
    Column("contacts", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

# Internal teams: who is in them and the business calendar their deliverables are due on (none: the
# request's definition's). A deliverable names its team by `name`; a team never registered is one
# without a calendar.
teams = Table(
    "teams",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("calendar", String(100), nullable=True),
    Column("members", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)

# Comments on a request (with the users they mention), and a supplier's questions on a deliverable.
request_comments = Table(
    "request_comments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("request_id", String(36), ForeignKey("requests.id"), nullable=False),
    Column("deliverable_id", String(36), ForeignKey("deliverables.id"), nullable=True),
    Column("author", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("mentions", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_request_comments_request", request_comments.c.request_id, request_comments.c.created_at)

# Files attached to a request: stored on disk under the attachment's id (no name from the caller
# reaches a path); the content type is one of an allow-list, checked against the file's first bytes.
attachments = Table(
    "attachments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("request_id", String(36), ForeignKey("requests.id"), nullable=False),
    Column("deliverable_id", String(36), ForeignKey("deliverables.id"), nullable=True),  # an assignee's delivery
    Column("filename", String(255), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
)
Index("ix_attachments_request", attachments.c.request_id, attachments.c.created_at)

# The budget's campaigns as the workflow knows them from `budget.campaign.*` events (a projection, for
# GET /v1/calendar): their dates, status and plan. `as_of` is the time of the event last applied, so
# an older event arriving late changes nothing.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), nullable=False),
    Column("plan_name", String(200), nullable=False),
    Column("code", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("status", String(20), nullable=False),  # planned | active | completed | cancelled
    Column("owner", String(200), nullable=True),
    Column("as_of", UTCDateTime, nullable=False),
)
Index("ix_campaigns_dates", campaigns.c.starts_on, campaigns.c.ends_on)
