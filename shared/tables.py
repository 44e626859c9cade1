"""Tables every service keeps in its own database: outbox, inbox, idempotency keys, timers,
dead letters (events its consumers could not apply) and the audit log (every change, who and when).

They are attached to the service's own MetaData so its Alembic migrations own
them like any other table.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from shared.db import JSONType, UTCDateTime

BigId = BigInteger().with_variant(Integer(), "sqlite")


@dataclass(frozen=True)
class InfraTables:
    outbox: Table
    inbox: Table
    idempotency: Table
    timers: Table
    dead_letters: Table
    audit: Table


def attach(metadata: MetaData) -> InfraTables:
    """The infrastructure tables every service's database has, on `metadata`."""
    return InfraTables(
        outbox=_outbox(metadata),
        inbox=_inbox(metadata),
        idempotency=_idempotency(metadata),
        timers=_timers(metadata),
        dead_letters=_dead_letters(metadata),
        audit=_audit(metadata),
    )


def _outbox(metadata: MetaData) -> Table:
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", BigId, primary_key=True, autoincrement=True),
        Column("id", String(36), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime, nullable=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
    )
    Index("ix_outbox_unsent", outbox.c.sent_at, outbox.c.seq)
    return outbox


def _inbox(metadata: MetaData) -> Table:
    inbox = Table(
        "inbox",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("subject", String(200), nullable=False),
        Column("processed_at", UTCDateTime, nullable=False),
    )
    return inbox


def _idempotency(metadata: MetaData) -> Table:
    idempotency = Table(
        "idempotency_keys",
        metadata,
        Column("scope", String(300), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("fingerprint", String(64), nullable=False),
        Column("status_code", Integer, nullable=False),
        Column("response", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    )
    return idempotency


def _timers(metadata: MetaData) -> Table:
    timers = Table(
        "timers",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("kind", String(50), nullable=False),
        Column("subject_id", String(36), nullable=False),
        Column("due_at", UTCDateTime, nullable=False),
        Column("payload", JSONType(), nullable=False),
        Column("status", String(20), nullable=False, default="pending"),
        Column("fired_at", UTCDateTime, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
    )
    Index("ix_timers_pending_due", timers.c.status, timers.c.due_at)
    Index("ix_timers_subject", timers.c.subject_id, timers.c.kind)
    return timers


def _dead_letters(metadata: MetaData) -> Table:
    dead_letters = Table(
        "dead_letters",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("event_id", String(100), nullable=False, unique=True),
        Column("subject", String(200), nullable=False),
        Column("source", String(100), nullable=True),
        Column("envelope", Text, nullable=False),  # the message exactly as delivered
        Column("reason", Text, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("status", String(20), nullable=False),  # open | replayed | discarded
        Column("first_failed_at", UTCDateTime, nullable=False),
        Column("last_failed_at", UTCDateTime, nullable=False),
        Column("resolved_at", UTCDateTime, nullable=True),
        Column("resolved_by", String(200), nullable=True),
        Column("note", Text, nullable=True),
    )
    Index("ix_dead_letters_status", dead_letters.c.status, dead_letters.c.last_failed_at)
    return dead_letters


def _audit(metadata: MetaData) -> Table:
    audit = Table(
        "audit_log",
        metadata,
        Column("seq", BigId, primary_key=True, autoincrement=True),
        Column("id", String(36), nullable=False, unique=True),
        Column("at", UTCDateTime, nullable=False),
        Column("actor", String(200), nullable=False),
        Column("actor_kind", String(20), nullable=False),  # user | api_key | service
        Column("request_id", String(100), nullable=True),
        Column("method", String(10), nullable=True),
        Column("path", String(300), nullable=True),
        Column("action", String(200), nullable=False),  # the event's subject, or what the use case names
        Column("entity", String(100), nullable=False),
        Column("entity_id", String(200), nullable=False),
        Column("before", JSONType(), nullable=True),
        Column("after", JSONType(), nullable=True),
    )
    Index("ix_audit_log_entity", audit.c.entity, audit.c.entity_id, audit.c.seq)
    Index("ix_audit_log_at", audit.c.at)
    return audit
