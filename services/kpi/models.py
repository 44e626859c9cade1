"""SQLAlchemy tables of the kpi service's own database.

Measurement values are stored as integer micro-units (value x 10^6) so sums are
exact integers on both SQLite and PostgreSQL (SQLite's NUMERIC is a float).
Dimensions are normalised into `dimension_sets` (one row per distinct set of
dimension values); raw rows and rollups point at it by a small integer id.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase

from shared.db import JSONType, UTCDateTime, describe_check, make_metadata
from shared.tables import attach

metadata = make_metadata()

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = metadata


infra = attach(metadata)

# Every version of every metric definition; the latest version is the current one.
metric_definitions = Table(
    "metric_definitions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("key", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("owner", String(200), nullable=True),
    Column("unit", String(20), nullable=False),
    Column("direction", String(20), nullable=False),
    Column("kind", String(10), nullable=False),
    Column("measurement_type", String(64), nullable=True),
    Column("aggregation", String(20), nullable=True),
    Column("distinct_on", String(64), nullable=True),
    Column("filter", JSONType(), nullable=False),
    Column("formula", Text, nullable=True),
    Column("depends_on", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    # kind "conversion" (a cohort rate over lifecycle facts): of the entities that reached from_stage in a
    # bucket, those that reached to_stage within window_days; null for base and derived metrics.
    Column("from_stage", String(20), nullable=True),
    Column("to_stage", String(20), nullable=True),
    Column("window_days", Integer, nullable=True),
    UniqueConstraint("key", "version"),
)

dimension_sets = Table(
    "dimension_sets",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("hash", String(32), nullable=False, unique=True),
    Column("dims", JSONType(), nullable=False),
)

measurements = Table(
    "measurements",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("value", BigInteger, nullable=False),  # micro-units
    Column("time", UTCDateTime, nullable=False),
    Column("day", Integer, nullable=False),  # UTC day number since 1970-01-01
    Column("month", Integer, nullable=False),  # UTC month number: year * 12 + month - 1
    Column("dimset_id", BigInteger, nullable=False),
    Column("source", String(100), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("source", "external_id"),
)
Index("ix_measurements_type_time", measurements.c.type, measurements.c.time)


# A rollup's sum (one type, UTC day or month, dimension set) stays within +-10**18 micro-units
# (+-10**12, a hundred of the largest values). Without it, a batch of 1,000 large values overflowed
# BIGINT on PostgreSQL (a 500) and turned the running sum into an inexact float on SQLite. With it,
# a running sum plus one batch's delta (itself within the bound, see rollups.add_deltas) stays inside
# 64 bits, so the database's CHECK, not an overflow, decides. `count` needs no bound: it grows by
# one per stored measurement, whose ids are 64-bit. Reads that add many rollups up are exact
# anyway (PostgreSQL's sum(bigint) is numeric; on SQLite see rollups.sum_parts).
MAX_ROLLUP_SUM = 10**18
SUM_IN_RANGE = f"sum > -{MAX_ROLLUP_SUM} AND sum < {MAX_ROLLUP_SUM}"
ROLLUP_SUM_RULE = (
    f"The values of one measurement type on one UTC day, or in one UTC month, with one set of dimensions "
    f"must add up to less than {MAX_ROLLUP_SUM // 10**6:,} in absolute value; this change would take a "
    f"sum past that, so nothing was written."
)


def _rollup_table(name: str, period: str) -> Table:
    describe_check(f"ck_{name}_sum_in_range", ROLLUP_SUM_RULE)
    return Table(
        name,
        metadata,
        Column("type", String(64), primary_key=True),
        Column(period, Integer, primary_key=True),
        Column("dimset_id", BigInteger, primary_key=True),
        Column("count", BigInteger, nullable=False),
        Column("sum", BigInteger, nullable=False),
        Column("min", BigInteger, nullable=False),
        Column("max", BigInteger, nullable=False),
        CheckConstraint(SUM_IN_RANGE, name="sum_in_range"),
    )


# One row per (type, UTC day, dimension set): day and week series, and the ragged
# edges of month/quarter ranges. The monthly table is the same sums per UTC month,
# so a year of month x channel reads ~12 rows per dimension set instead of ~365.
rollups_daily = _rollup_table("rollups_daily", "day")
rollups_monthly = _rollup_table("rollups_monthly", "month")

# First sighting of every measurement type and dimension value (data quality).
seen_values = Table(
    "seen_values",
    metadata,
    Column("dimension", String(64), primary_key=True),  # "type" for measurement types
    Column("value", String(200), primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("first_source", String(100), nullable=False),
)
Index("ix_seen_values_first_seen_at", seen_values.c.first_seen_at)

# Rejections, duplicates dropped and late arrivals, written by the ingest transaction.
quality_issues = Table(
    "quality_issues",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(20), nullable=False),  # rejected | duplicate | late
    Column("at", UTCDateTime, nullable=False),
    Column("source", String(100), nullable=True),
    Column("count", Integer, nullable=False),
    Column("detail", JSONType(), nullable=False),
)
Index("ix_quality_issues_kind_at", quality_issues.c.kind, quality_issues.c.at)

targets = Table(
    "targets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("metric", String(64), nullable=False),
    Column("period", String(10), nullable=False),
    Column("filter", JSONType(), nullable=False),
    Column("filter_hash", String(32), nullable=False),
    Column("value", BigInteger, nullable=False),  # micro-units
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("at_risk_published_at", UTCDateTime, nullable=True),
    # A target set as a change against last year: the basis (that period's label, e.g. 2026-Q1), its value
    # then (micro-units) and the relative change asked for (decimal text, 0.10 = +10 %); null for a value.
    Column("basis", String(20), nullable=True),
    Column("basis_value", BigInteger, nullable=True),
    Column("change", String(40), nullable=True),
    UniqueConstraint("metric", "period", "filter_hash"),
)

touchpoints = Table(
    "touchpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("journey_id", String(200), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("channel", String(100), nullable=False),
    Column("campaign", String(200), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_touchpoints_journey_time", touchpoints.c.journey_id, touchpoints.c.time)

conversions = Table(
    "conversions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("journey_id", String(200), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("value", BigInteger, nullable=False),  # micro-units
    Column("dimensions", JSONType(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)
Index("ix_conversions_time", conversions.c.time)

# CRM lifecycle: the first time an entity (a lead, followed through to its opportunity) reached a
# stage. One row per (entity, stage): a repeat is a duplicate, so cohorts count each entity once.
lifecycle_facts = Table(
    "lifecycle_facts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("entity_id", String(200), nullable=False),
    Column("stage", String(20), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("dimensions", JSONType(), nullable=False),
    Column("source", String(100), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    UniqueConstraint("entity_id", "stage"),
)
Index("ix_lifecycle_facts_stage_time", lifecycle_facts.c.stage, lifecycle_facts.c.time)

# Anomalies found by the daily check (services/kpi/anomalies.py): one per metric, group and day, so a
# check run twice publishes once and a dismissal (status "dismissed") is remembered.
anomalies = Table(
    "anomalies",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("metric", String(64), nullable=False),
    Column("group_hash", String(32), nullable=False),
    Column("dims", JSONType(), nullable=False),
    Column("day", Date, nullable=False),
    Column("observed", String(40), nullable=False),  # decimal text, as the series answers
    Column("expected", String(40), nullable=False),
    Column("low", String(40), nullable=False),
    Column("high", String(40), nullable=False),
    Column("direction", String(10), nullable=False),  # above | below
    Column("status", String(10), nullable=False),  # open | dismissed
    Column("detected_at", UTCDateTime, nullable=False),
    Column("dismissed_at", UTCDateTime, nullable=True),
    Column("dismissed_by", String(200), nullable=True),
    Column("note", Text, nullable=True),
    UniqueConstraint("metric", "group_hash", "day"),
)
Index("ix_anomalies_day", anomalies.c.day)
