"""SQLAlchemy tables of the budget service's own database.

The ledger (`entries`) is append-only: every row carries the signed change it
makes to the four buckets (allocated, committed, pending, spent) of one line and
period, so a balance is always the sum of its entries. `balances` keeps those
sums running (updated in the same transaction as each entry) so reads never
re-sum the ledger: `own_*` is the line's own figure, the unprefixed columns are
the line's whole subtree (the line plus every descendant).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase

from shared.db import JSONType, UTCDateTime, describe_check, make_metadata
from shared.money import MAX_MINOR
from shared.tables import attach

metadata = make_metadata()


class Base(DeclarativeBase):
    metadata = metadata


infra = attach(metadata)

BigId = BigInteger().with_variant(Integer(), "sqlite")
Minor = BigInteger

plans = Table(
    "plans",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("fiscal_year", Integer, nullable=False),  # named by the calendar year in which it ends
    Column("currency", String(3), nullable=False),
    Column("status", String(20), nullable=False),  # draft | active | closed
    Column("overspend_policy", String(20), nullable=False),  # block | require_approval
    Column("approval_threshold_minor", Minor, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("fiscal_year_start", Integer, nullable=False, server_default="1"),  # month number, 1-12
    # The overspend check's scope: month | quarter | fiscal_year (services.budget.periods.control_scope)
    Column("control_period", String(20), nullable=False, server_default="month"),
    CheckConstraint("fiscal_year_start BETWEEN 1 AND 12", name="fiscal_year_start_month"),
)
Index("ix_plans_fiscal_year_status", plans.c.fiscal_year, plans.c.status)

lines = Table(
    "lines",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("code", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("parent_id", String(36), ForeignKey("lines.id"), nullable=True),
    # Materialized path of ids, "/root/child/", so a subtree is a prefix match.
    Column("path", String(2000), nullable=False),
    Column("depth", Integer, nullable=False),
    Column("dimensions", JSONType(), nullable=False),
    Column("tags", JSONType(), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("plan_id", "code"),
)
Index("ix_lines_code", lines.c.code)

# Each running figure stays below one amount's limit: any realistic month fits, and the sums the
# reads make (12 months of a line, thresholds times 100) stay far inside BIGINT. Without it, enough
# postings overflowed BIGINT on PostgreSQL (a 500) and silently became a float on SQLite.
FIGURES_IN_RANGE = " AND ".join(
    f"{c} > -{MAX_MINOR} AND {c} < {MAX_MINOR}"
    for c in (
        "allocated",
        "committed",
        "pending",
        "spent",
        "own_allocated",
        "own_committed",
        "own_pending",
        "own_spent",
    )
)

balances = Table(
    "balances",
    metadata,
    Column("line_id", String(36), ForeignKey("lines.id"), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("allocated", Minor, nullable=False),
    Column("committed", Minor, nullable=False),
    Column("pending", Minor, nullable=False),
    Column("spent", Minor, nullable=False),
    Column("own_allocated", Minor, nullable=False),
    Column("own_committed", Minor, nullable=False),
    Column("own_pending", Minor, nullable=False),
    Column("own_spent", Minor, nullable=False),
    CheckConstraint(FIGURES_IN_RANGE, name="figures_in_range"),
)
Index("ix_balances_plan_period", balances.c.plan_id, balances.c.period)
describe_check(
    "ck_balances_figures_in_range",
    f"A line's figures for one month (allocated, committed, pending, spent) must stay within "
    f"+-{MAX_MINOR:.0e} minor units of the plan currency; this change would take one past that, "
    f"so nothing was written.",
)

commitments = Table(
    "commitments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("line_id", String(36), ForeignKey("lines.id"), nullable=False),
    Column("period", String(7), nullable=False),
    Column("entry_date", Date, nullable=False),
    Column("status", String(20), nullable=False),  # pending_approval | committed | released | closed
    Column("amount_minor", Minor, nullable=False),  # plan currency
    Column("consumed_minor", Minor, nullable=False),
    Column("original_amount_minor", Minor, nullable=False),
    Column("original_currency", String(3), nullable=False),
    Column("fx_rate", String(40), nullable=False),
    Column("reason", String(20), nullable=True),  # why approval is needed: threshold | over_available
    Column("external_ref", String(200), nullable=True, unique=True),
    Column("external_revision", Integer, nullable=True),
    Column("vendor", String(200), nullable=True),
    Column("memo", Text, nullable=True),
    Column("campaign_id", String(36), nullable=True),  # the campaign it funds, if any
    Column("requested_by", String(200), nullable=False),
    Column("decided_by", String(200), nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_commitments_line", commitments.c.line_id, commitments.c.status)

entries = Table(
    "entries",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    # One posting (a transfer's two sides, an actual and the commitment it consumes) shares a group.
    Column("group_id", String(36), nullable=False),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("line_id", String(36), ForeignKey("lines.id"), nullable=False),
    Column("period", String(7), nullable=False),
    Column("entry_date", Date, nullable=False),
    # allocation | transfer_out | transfer_in | commitment | approval | release | consumption | actual | reversal
    Column("kind", String(20), nullable=False),
    Column("amount_minor", Minor, nullable=False),  # plan currency, a magnitude
    Column("original_amount_minor", Minor, nullable=False),
    Column("original_currency", String(3), nullable=False),
    Column("fx_rate", String(40), nullable=False),
    Column("d_allocated", Minor, nullable=False),
    Column("d_committed", Minor, nullable=False),
    Column("d_pending", Minor, nullable=False),
    Column("d_spent", Minor, nullable=False),
    Column("commitment_id", String(36), nullable=True),
    Column("reverses_group_id", String(36), nullable=True),
    Column("external_ref", String(200), nullable=True),
    Column("vendor", String(200), nullable=True),
    Column("memo", Text, nullable=True),
    Column("author", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("campaign_id", String(36), nullable=True),  # the campaign a commitment's or an actual's entries fund
)
Index("ix_entries_line_seq", entries.c.line_id, entries.c.seq)
Index(
    "ix_entries_campaign",
    entries.c.campaign_id,
    postgresql_where=entries.c.campaign_id.is_not(None),
    sqlite_where=entries.c.campaign_id.is_not(None),
)
Index("ix_entries_group", entries.c.group_id)
Index("ix_entries_reverses", entries.c.reverses_group_id)

closed_periods = Table(
    "closed_periods",
    metadata,
    Column("plan_id", String(36), ForeignKey("plans.id"), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("closed_by", String(200), nullable=False),
    Column("closed_at", UTCDateTime, nullable=False),
)

fx_rates = Table(
    "fx_rates",
    metadata,
    Column("base", String(3), primary_key=True),
    Column("quote", String(3), primary_key=True),
    Column("rate_date", Date, primary_key=True),
    Column("rate", String(40), nullable=False),  # quote per one base, a decimal string
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

erp_invoices = Table(
    "erp_invoices",
    metadata,
    Column("invoice_number", String(200), primary_key=True),
    Column("group_id", String(36), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The po_number of an invoice posted before its order was known: cleared once the order's commitment
    # is consumed by it (services.budget.integrations.match_earlier_invoices).
    Column("unmatched_po", String(200), nullable=True),
)
Index("ix_erp_invoices_unmatched_po", erp_invoices.c.unmatched_po)

# What the budget refused when it arrived as an event or an ERP document (a contract term's
# commitment, a purchase order): kept with its reason and the original request, so nothing a
# partner or service sent vanishes, and retried once the line is funded (`status` -> retried).
refusals = Table(
    "refusals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(30), nullable=False),  # contract_commitment | erp_purchase_order
    Column("external_ref", String(200), nullable=False),  # contract:<id>:<term> or the PO number
    Column("request", JSONType(), nullable=False),  # what arrived, as its model dumps it: the retry's input
    Column("fiscal_year", Integer, nullable=True),
    Column("line_code", String(100), nullable=True),
    Column("plan_id", String(36), nullable=True),  # when the line could be resolved
    Column("line_id", String(36), nullable=True),
    Column("dimensions", JSONType(), nullable=False),  # the line's, for scoping ({} when unknown)
    Column("period", String(7), nullable=True),
    Column("amount", String(40), nullable=True),  # as requested, a decimal string
    Column("currency", String(3), nullable=True),
    Column("reason", Text, nullable=False),
    Column("code", String(40), nullable=False),  # the refusing problem's kind: conflict, invalid, ...
    Column("requested_by", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # refused | retried
    Column("commitment_id", String(36), nullable=True),  # the retry's commitment
    Column("created_at", UTCDateTime, nullable=False),
    Column("retried_at", UTCDateTime, nullable=True),
    Column("retried_by", String(200), nullable=True),
    UniqueConstraint("kind", "external_ref"),
)
Index("ix_refusals_status_created", refusals.c.status, refusals.c.created_at)

# ERP coordinates -> budget line code, first matching rule by (priority, id). A condition left null
# matches anything; one ending in "*" matches by prefix. The line code is resolved in the active plan
# of the document's fiscal year, as a line code sent by the ERP is.
erp_mapping_rules = Table(
    "erp_mapping_rules",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("priority", Integer, nullable=False),  # lower first
    Column("company_code", String(200), nullable=True),
    Column("cost_center", String(200), nullable=True),
    Column("gl_account", String(200), nullable=True),
    Column("vendor", String(200), nullable=True),
    Column("internal_order", String(200), nullable=True),
    Column("campaign_code", String(200), nullable=True),
    Column("line_code", String(100), nullable=False),
    Column("description", Text, nullable=True),
    Column("version", Integer, nullable=False, server_default="1"),  # If-Match of PUT /erp/mapping/{id}
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_by", String(200), nullable=True),
    Column("updated_at", UTCDateTime, nullable=True),
)
Index("ix_erp_mapping_rules_priority", erp_mapping_rules.c.priority, erp_mapping_rules.c.id)

# ERP documents that named no line and matched no rule: they wait here until a rule maps them or
# someone assigns a line, and are then posted once (`status` waiting -> posted).
erp_suspense = Table(
    "erp_suspense",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),  # purchase_order | invoice
    Column("document_ref", String(200), nullable=False),  # the PO or invoice number
    Column("request", JSONType(), nullable=False),  # the document as it arrived: what the posting runs
    Column("coordinates", JSONType(), nullable=False),  # company_code, cost_center, ... as sent
    Column("amount", String(40), nullable=True),
    Column("currency", String(3), nullable=True),
    Column("reason", Text, nullable=False),
    Column("received_by", String(200), nullable=False),
    Column("status", String(20), nullable=False),  # waiting | posted
    Column("line_code", String(100), nullable=True),  # the line it was posted to
    Column("result_id", String(36), nullable=True),  # the commitment or the actual entry it made
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("posted_by", String(200), nullable=True),
    UniqueConstraint("kind", "document_ref"),
)
Index("ix_erp_suspense_status_created", erp_suspense.c.status, erp_suspense.c.created_at)

# A plan's other versions beside its budget (the ledger's allocations): forecasts (actuals up to
# `as_of`, then the expected amounts) and scenarios (amounts changed freely), compared by the
# variance report and promoted to a new forecast or, by an admin, to the budget.
plan_versions = Table(
    "plan_versions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("seq", Integer, nullable=False),  # per plan, 1, 2, ...: "latest" is the highest
    Column("kind", String(20), nullable=False),  # forecast | scenario
    Column("name", String(200), nullable=False),
    Column("as_of", String(7), nullable=True),  # forecasts: the last month taken from actuals
    Column("source", String(60), nullable=False),  # what it was copied from: budget | <version id>
    Column("status", String(20), nullable=False),  # open | promoted
    Column("promoted_to", String(20), nullable=True),  # forecast | budget
    Column("promoted_version_id", String(36), nullable=True),  # the forecast a promotion made
    Column("promoted_by", String(200), nullable=True),
    Column("promoted_at", UTCDateTime, nullable=True),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("plan_id", "seq"),
)

version_amounts = Table(
    "version_amounts",
    metadata,
    Column("version_id", String(36), ForeignKey("plan_versions.id"), primary_key=True),
    Column("line_id", String(36), ForeignKey("lines.id"), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("amount_minor", Minor, nullable=False),  # the line's own amount, plan currency
)

# Campaigns: what marketing spends on, funded by budget lines; commitments and actuals may name one,
# so its committed and spent money (and the KPI service's cost per lead) exist per campaign.
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("code", String(100), nullable=False),
    Column("name", String(200), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("owner", String(200), nullable=True),
    Column("status", String(20), nullable=False),  # planned | active | completed | cancelled
    Column("planned_cost_minor", Minor, nullable=False),  # plan currency
    Column("line_ids", JSONType(), nullable=False),  # the lines that fund it (and their descendants)
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("plan_id", "code"),
)

# Activities within a campaign (a webinar, a booth, a paid burst): their dates and planned cost.
campaign_activities = Table(
    "campaign_activities",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("campaign_id", String(36), ForeignKey("campaigns.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("starts_on", Date, nullable=False),
    Column("ends_on", Date, nullable=False),
    Column("planned_cost_minor", Minor, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_campaign_activities_campaign", campaign_activities.c.campaign_id, campaign_activities.c.starts_on)

# Bottom-up requests: a line owner asks for money per line and month of a plan, with a justification;
# the workflow's approval decides (budget.request.submitted -> workflow.instance.approved|rejected|
# cancelled), and approval posts the amounts as allocations. `history` lists each step as it happened.
budget_requests = Table(
    "budget_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("plan_id", String(36), ForeignKey("plans.id"), nullable=False),
    Column("status", String(20), nullable=False),  # pending_approval | approved | rejected | cancelled | failed
    Column("justification", Text, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total_minor", Minor, nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("requester_scopes", JSONType(), nullable=False),  # the submitter's scopes, checked again at approval
    Column("instance_id", String(100), nullable=True),  # the workflow instance that decided it
    Column("decided_by", String(200), nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("reason", Text, nullable=True),  # why it was rejected, or why its approved amounts could not be posted
    Column("history", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_budget_requests_created", budget_requests.c.created_at, budget_requests.c.id)

budget_request_items = Table(
    "budget_request_items",
    metadata,
    Column("request_id", String(36), ForeignKey("budget_requests.id"), primary_key=True),
    Column("line_id", String(36), ForeignKey("lines.id"), primary_key=True),
    Column("period", String(7), primary_key=True),
    Column("amount_minor", Minor, nullable=False),  # plan currency
    Column("entry_id", String(36), nullable=True),  # the allocation approval posted
)
