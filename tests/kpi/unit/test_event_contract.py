"""KPI's event contract, and the measurements consumed events become (read with tolerant models)."""

from __future__ import annotations

import pytest

from services.kpi import events, handlers
from shared.errors import Invalid
from shared.events import new_event

SUBJECT = {"type": "commitment", "id": "c-1", "service": "budget"}
AT_RISK = {
    "target_id": "t-1",
    "metric": "cpl",
    "period": "2027-Q1",
    "filter": {"region": "EMEA"},
    "actual": "25.00",
    "target": "20.00",
    "projected": "25.00",
    "direction": "lower_is_better",
    "elapsed": 0.5,
}


def test_the_at_risk_event_is_published_as_it_always_was():
    assert events.TARGET_AT_RISK.dump(AT_RISK) == AT_RISK
    assert list(events.TARGET_AT_RISK.dump(AT_RISK)) == list(AT_RISK)  # the same keys in the same order


@pytest.mark.parametrize("bad", [{**AT_RISK, "extra": 1}, {**AT_RISK, "direction": "up"}, {**AT_RISK, "elapsed": 2}])
def test_publishing_anything_else_is_a_bug_that_rolls_the_change_back(bad):
    with pytest.raises(TypeError):
        events.TARGET_AT_RISK.dump(bad)


def test_the_catalogue_lists_what_the_service_publishes_and_consumes():
    assert {c.subject for c in events.CATALOGUE.consumes} == {
        "budget.actual.posted",
        "workflow.instance.approved",
        "workflow.instance.rejected",
        "workflow.instance.cancelled",
        "workflow.sla.breached",
        "registry.saving.recorded",
        "workflow.deliverable.approved",
    }
    assert [s.subject for s in events.CATALOGUE.publishes] == ["kpi.target.at_risk", "kpi.anomaly.detected"]


def actual(**data):
    base = {
        "entry_id": "e-1",
        "plan_id": "p-1",
        "line_id": "l-1",
        "line_code": "EMEA-SEARCH",
        "period": "2027-03",
        "date": "2027-03-04T00:00:00+00:00",
        "amount": "12.50",
        "currency": "EUR",
        "original_amount": "12.50",
        "original_currency": "EUR",
        "commitment_id": None,
        "external_ref": "INV-1",
        "vendor": "Acme",
        "dimensions": {},
    }
    return new_event("budget.actual.posted", "budget", "e-1", {**base, **data})


def test_spend_is_one_measurement_per_entry_with_line_and_currency_as_dimensions():
    [item] = handlers.spend_items(actual(dimensions={"region": "EMEA", "cost_center": None}, added_later="x"))
    assert item == {
        "type": "spend",
        "value": "12.50",
        "time": "2027-03-04T00:00:00+00:00",
        "dimensions": {"region": "EMEA", "line_code": "EMEA-SEARCH", "currency": "EUR"},
        "source": "budget",
        "external_id": "e-1",
    }


@pytest.mark.parametrize("amount", [12.5, "1e3", "+5", None])
def test_an_amount_outside_the_decimal_grammar_cannot_become_spend(amount):
    with pytest.raises(Invalid, match="data.amount"):
        handlers.spend_items(actual(amount=amount))


def test_an_event_missing_a_field_of_its_contract_is_refused_naming_it():
    env = actual()
    del env.data["entry_id"]
    with pytest.raises(Invalid, match="data.entry_id"):
        handlers.spend_items(env)


def test_a_finished_workflow_is_completed_within_sla_and_cycle_time():
    env = new_event(
        "workflow.instance.rejected",
        "workflow",
        "i-1",
        {
            "instance_id": "i-1",
            "definition_key": "spend-approval",
            "definition_version": 1,
            "subject": SUBJECT,
            "requester": "dana",
            "status": "rejected",
            "finished_at": "2027-03-04T10:00:00+00:00",
            "sla_met": False,
            "cycle_time_business_hours": 3.25,
            "cycle_time_hours": 20.0,
            "context": {"region": "EMEA", "amount": "100.00", "nested": {"x": 1}},
        },
    )
    items = handlers.workflow_items(env)
    assert [(i["type"], i["value"], i["external_id"]) for i in items] == [
        ("workflows_completed", "1", "i-1:completed"),
        ("workflows_sla_met", "0", "i-1:sla_met"),
        ("approval_cycle_time_hours", "3.250000", "i-1:cycle_time"),
    ]
    assert items[0]["dimensions"] == {"definition": "spend-approval", "outcome": "rejected", "region": "EMEA"}
    assert items[0]["time"] == "2027-03-04T10:00:00+00:00"


def test_a_breach_is_one_measurement_per_task():
    breach = {
        "task_id": "k-1",
        "instance_id": "i-1",
        "definition_key": "spend-approval",
        "stage": "finance",
        "due_at": "2027-03-09T17:00:00+00:00",
        "escalation": {},
        "context": {"channel": "search"},
        "subject": SUBJECT,
    }
    [item] = handlers.breach_items(new_event("workflow.sla.breached", "workflow", "k-1", breach))
    assert item["external_id"] == "k-1:breached" and item["time"] == "2027-03-09T17:00:00+00:00"
    assert item["dimensions"] == {"definition": "spend-approval", "stage": "finance", "channel": "search"}
