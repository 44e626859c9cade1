"""SQLAlchemy tables of the registry service's own database."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.registry.events import BillingPeriod, Lifecycle, TimeClass
from shared.db import JSONType, UTCDateTime, make_metadata
from shared.tables import attach

metadata = make_metadata()

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


infra = attach(metadata)


class Category(Base):
    """The seeded martech-landscape taxonomy (rows come from the migration)."""

    __tablename__ = "categories"

    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")


class Tool(Base):
    __tablename__ = "tools"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    vendor: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    category: Mapped[str] = mapped_column(ForeignKey("categories.key"), nullable=False)
    capabilities: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    owner_team: Mapped[str | None] = mapped_column(String(100), nullable=True)
    owner_person: Mapped[str | None] = mapped_column(String(100), nullable=True)
    business_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lifecycle: Mapped[Lifecycle] = mapped_column(String(20), nullable=False)
    time_class: Mapped[TimeClass | None] = mapped_column(String(20), nullable=True)
    personal_data: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    sso: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    url: Mapped[str | None] = mapped_column(String(500), nullable=True)
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    # The layer of the stack it sits in (a key of the layer configuration), null while unplaced.
    layer: Mapped[str | None] = mapped_column(String(50), nullable=True)

    __table_args__ = (Index("ix_tools_lifecycle", "lifecycle"),)


class LayerConfig(Base):
    """The layers of the stack and the rules between them: one versioned document (row `id` 1)."""

    __tablename__ = "layer_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    updated_by: Mapped[str] = mapped_column(String(200), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class ToolHistory(Base):
    """Append-only audit trail: one row per change of a tool (who, when, what)."""

    __tablename__ = "tool_history"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(30), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_tool_history_tool", "tool_id", "seq"),)


class Contract(Base):
    """A contract and its current term; earlier terms are kept in `contract_terms`."""

    __tablename__ = "contracts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), nullable=False)
    term: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    start: Mapped[dt.date] = mapped_column(Date, nullable=False)
    end: Mapped[dt.date] = mapped_column(Date, nullable=False)
    billing_period: Mapped[BillingPeriod] = mapped_column(String(20), nullable=False)
    cost_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    seats: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_renew: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    notice_days: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    budget_line_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    external_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[Literal["active", "cancelled"]] = mapped_column(String(20), nullable=False, default="active")
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Days before the notice deadline its renewal milestones fall on; null: the service's default.
    milestone_days: Mapped[list[int] | None] = mapped_column(JSONType(), nullable=True)
    # When notice was given (a review decided to cancel): the current term runs out, nothing renews.
    notice_given_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the budget last said about a term's commitment (budget.commitment.* events), and of which term.
    budget_term: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    budget_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    budget_refusal_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    budget_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    budget_code: Mapped[str | None] = mapped_column(String(50), nullable=True)

    __table_args__ = (
        CheckConstraint('"end" >= start', name="end_after_start"),
        CheckConstraint("cost_minor >= 0", name="cost_not_negative"),
        CheckConstraint("seats IS NULL OR seats >= 0", name="seats_not_negative"),
        Index("ix_contracts_tool", "tool_id"),
        Index("ix_contracts_status_end", "status", "end"),
    )


class ContractTerm(Base):
    """Every term a contract has had, as it was when the term started (and how it ended)."""

    __tablename__ = "contract_terms"

    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    term: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[dt.date] = mapped_column(Date, nullable=False)
    end: Mapped[dt.date] = mapped_column(Date, nullable=False)
    billing_period: Mapped[BillingPeriod] = mapped_column(String(20), nullable=False)
    cost_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    commit_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    seats: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[Literal["current", "renewed", "cancelled"]] = mapped_column(
        String(20), nullable=False, default="current"
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class UtilizationSnapshot(Base):
    """Seats and active users of a tool on a day, as an SSO/SCIM export or a person reported them."""

    __tablename__ = "utilization_snapshots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), nullable=False)
    date: Mapped[dt.date] = mapped_column(Date, nullable=False)
    seats_purchased: Mapped[int | None] = mapped_column(Integer, nullable=True)
    active_users: Mapped[int] = mapped_column(Integer, nullable=False)
    source: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (
        UniqueConstraint("tool_id", "date", "source"),
        CheckConstraint("active_users >= 0", name="active_users_not_negative"),
    )


class Integration(Base):
    """A data flow from one tool to another."""

    __tablename__ = "integrations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    from_tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), nullable=False)
    to_tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), nullable=False)
    data_objects: Mapped[list[str]] = mapped_column(JSONType(), nullable=False, default=list)
    direction: Mapped[str] = mapped_column(String(20), nullable=False)
    method: Mapped[str] = mapped_column(String(20), nullable=False)
    owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="active")
    notes: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    # Health: the last moment a check (or a person) saw the flow working, and the last reported problem.
    last_seen_working_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    health_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    version: Mapped[int] = mapped_column(Integer, nullable=False, default=1, server_default="1")
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        CheckConstraint("from_tool_id <> to_tool_id", name="not_a_loop"),
        Index("ix_integrations_from", "from_tool_id"),
        Index("ix_integrations_to", "to_tool_id"),
    )


class IntegrationHistory(Base):
    """Append-only trail of an integration: one row per change (who, when, which fields from what to what)."""

    __tablename__ = "integration_history"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    integration_id: Mapped[str] = mapped_column(ForeignKey("integrations.id"), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    action: Mapped[str] = mapped_column(String(30), nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType(), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_integration_history_integration", "integration_id", "seq"),)


class FxRate(Base):
    """How many units of the base currency one unit of `currency` is worth (for overlaps and costs)."""

    __tablename__ = "fx_rates"

    base_currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    rate: Mapped[str] = mapped_column(String(40), nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class RenewalDecision(Base):
    """What a renewal review decided for a contract's term, and what the registry did about it."""

    __tablename__ = "renewal_decisions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), nullable=False)
    term: Mapped[int] = mapped_column(Integer, nullable=False)
    instance_id: Mapped[str | None] = mapped_column(String(200), nullable=True, unique=True)
    outcome: Mapped[Literal["renew", "cancel", "renegotiate", "withdrawn", "auto_renewed"]] = mapped_column(
        String(20), nullable=False
    )
    status: Mapped[Literal["applied", "waiting", "no_effect"]] = mapped_column(String(20), nullable=False)
    late: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    notice_deadline: Mapped[dt.date] = mapped_column(Date, nullable=False)
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(200), nullable=False)
    effect: Mapped[str] = mapped_column(Text, nullable=False)
    new_terms: Mapped[dict[str, Any] | None] = mapped_column(JSONType(), nullable=True)
    next_term: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auto_renewed_term: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_renewal_decisions_contract", "contract_id", "term"),)


class VendorAlias(Base):
    """A vendor name (normalised) that means a tool: learned when a discovery candidate is merged."""

    __tablename__ = "vendor_aliases"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    alias: Mapped[str] = mapped_column(String(200), nullable=False)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), nullable=False)
    created_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class DiscoveryCandidate(Base):
    """A vendor the budget paid that no tool matches: accept it, merge it into a tool, or ignore it."""

    __tablename__ = "discovery_candidates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    vendor_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    vendor: Mapped[str] = mapped_column(String(200), nullable=False)
    status: Mapped[Literal["open", "accepted", "merged", "ignored"]] = mapped_column(String(20), nullable=False)
    tool_id: Mapped[str | None] = mapped_column(ForeignKey("tools.id"), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False)


class ToolSpend(Base):
    """One actual the budget posted with a vendor: attached to the tool it paid, or to a candidate."""

    __tablename__ = "tool_spend"

    entry_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    vendor_key: Mapped[str] = mapped_column(String(200), nullable=False)
    tool_id: Mapped[str | None] = mapped_column(ForeignKey("tools.id"), nullable=True)
    candidate_id: Mapped[str | None] = mapped_column(ForeignKey("discovery_candidates.id"), nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    day: Mapped[dt.date] = mapped_column(Date, nullable=False)
    line_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    external_ref: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (
        Index("ix_tool_spend_candidate", "candidate_id"),
        Index("ix_tool_spend_tool", "tool_id", "day"),
    )


class ToolLogin(Base):
    """A person's last login to a tool, from an SSO or app-login export (the latest one kept)."""

    __tablename__ = "tool_logins"

    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id"), primary_key=True)
    person: Mapped[str] = mapped_column(String(200), primary_key=True)
    last_login: Mapped[dt.date] = mapped_column(Date, nullable=False)
