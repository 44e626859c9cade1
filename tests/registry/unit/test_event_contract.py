"""The registry's event contract: what it publishes is what it always published, field for field."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from services.registry import events
from shared import asyncapi

CREATED = dt.datetime(2027, 1, 1, 10, 0, 0, 123, tzinfo=dt.UTC)
TOOL = {
    "id": "t1",
    "name": "Acme CRM",
    "vendor": "Acme",
    "category": "social_relationships",
    "capabilities": ["crm"],
    "owner": {"team": "mops", "person": "dana"},
    "business_owner": None,
    "lifecycle": "active",
    "status": "active",
    "time_class": None,
    "personal_data": False,
    "sso": True,
    "url": None,
    "notes": None,
    "version": 1,
    "created_at": CREATED,
    "updated_at": CREATED,
}
TERM = {
    "contract_id": "c1",
    "tool_id": "t1",
    "tool_name": "Acme CRM",
    "term": 1,
    "start": dt.date(2027, 3, 1),
    "end": dt.date(2028, 2, 29),
    "billing_period": "monthly",
    "cost": Decimal("1000.00"),
    "currency": "EUR",
    "annual_cost": Decimal("12000.00"),
    "commit_amount": Decimal("12000.00"),
    "budget_line_code": "MARTECH",
    "fiscal_year": 2027,
    "period": "2027-03",
    "seats": 40,
    "auto_renew": True,
    "notice_days": 45,
    "external_ref": "contract:c1:1",
}


def test_a_tool_event_writes_instants_with_their_offset_as_it_always_did():
    data = events.TOOL_CREATED.dump(TOOL)
    assert data["created_at"] == "2027-01-01T10:00:00.000123+00:00" == CREATED.isoformat()
    assert data["owner"] == {"team": "mops", "person": "dana"} and list(data) == [
        *TOOL,
        "layer",
    ]  # layer: a minor addition


def test_a_contract_event_writes_dates_iso_and_money_as_decimal_strings():
    data = events.CONTRACT_CREATED.dump(TERM)
    assert data["start"] == "2027-03-01" and data["end"] == "2028-02-29"
    assert (data["cost"], data["annual_cost"], data["commit_amount"]) == ("1000.00", "12000.00", "12000.00")
    jpy = events.CONTRACT_RENEWED.dump(TERM | {"cost": Decimal("1000"), "currency": "JPY"})
    assert jpy["cost"] == "1000"
    cancelled = events.CONTRACT_CANCELLED.dump(TERM | {"reason": None})
    assert cancelled["reason"] is None and set(cancelled) == set(TERM) | {"reason"}


def test_publishing_a_field_the_contract_does_not_name_is_a_bug():
    with pytest.raises(TypeError, match="no field"):
        events.CONTRACT_CREATED.dump(TERM | {"surprise": 1})
    with pytest.raises(TypeError, match="period"):
        events.CONTRACT_CREATED.dump(TERM | {"period": "March"})


def test_the_catalogue_lists_every_subject_once_and_consumes_the_review_outcomes():
    subjects = [s.subject for s in events.CATALOGUE.publishes]
    assert subjects == [
        "registry.tool.created",
        "registry.tool.updated",
        "registry.tool.lifecycle_changed",
        "registry.contract.created",
        "registry.contract.renewed",
        "registry.contract.cancelled",
        "registry.renewal.due",
        "registry.renewal.milestone",
        "registry.renewal.decided",
        "registry.integration.broken",
        "registry.saving.recorded",
    ]
    assert [c.subject for c in events.CATALOGUE.consumes] == [
        *(f"workflow.instance.{k}" for k in ("approved", "rejected", "changes_requested", "resubmitted", "cancelled")),
        "budget.actual.posted",
        *(f"budget.commitment.{k}" for k in ("refused", "committed", "requested", "released")),
    ]
    part = asyncapi.part(events.CATALOGUE)
    assert set(part["channels"]) == set(subjects)
    assert all(channel["x-pitcrew-stream"] == "REGISTRY" for channel in part["channels"].values())
    # Model names carry the service's name: the gateway merges every service's schemas into one document.
    assert all(name.startswith("Registry") for name in part["components"]["schemas"])
