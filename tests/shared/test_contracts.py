"""Event contracts: publishing validates, reading tolerates newer minor fields, AsyncAPI names every party."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared import asyncapi
from shared.contracts import Catalogue, Consumed, EventData, EventSpec
from shared.errors import Invalid


class Moved(EventData):
    line_id: str
    amount: Decimal
    memo: str | None = None


MOVED = EventSpec("budget.money.moved", Moved, "Money moved between lines")


def test_publishing_validates_and_dumps_json_ready_data():
    assert MOVED.dump({"line_id": "l1", "amount": "12.50"}) == {"line_id": "l1", "amount": "12.50", "memo": None}
    assert MOVED.dump(Moved(line_id="l1", amount=Decimal("1.00")))["amount"] == "1.00"
    with pytest.raises(TypeError, match="no field"):
        MOVED.dump({"line_id": "l1", "amount": "1", "surprise": 1})
    with pytest.raises(TypeError, match="amount"):
        MOVED.dump({"line_id": "l1"})


def test_reading_ignores_fields_of_a_newer_minor_version_and_names_a_bad_field():
    assert MOVED.read({"line_id": "l1", "amount": "2", "added_later": True}).amount == Decimal(2)
    with pytest.raises(Invalid, match=r"data\.amount"):
        MOVED.read({"line_id": "l1", "amount": "two"})


def test_asyncapi_lists_every_channel_with_its_publisher_consumers_and_schema():
    budget = Catalogue("budget", (MOVED,))
    kpi = Catalogue("kpi", (), (Consumed("budget.>", "spend from the ledger"),))
    workflow = Catalogue("workflow", (), (Consumed("budget.money.moved", "starts a review", frozenset({1, 2})),))
    doc = asyncapi.document([budget, kpi, workflow])
    assert doc["asyncapi"] == "3.0.0"
    channel = doc["channels"]["budget.money.moved"]
    assert channel["x-pitcrew-stream"] == "BUDGET" and channel["x-pitcrew-publisher"] == "budget"
    assert channel["x-pitcrew-consumers"] == ["kpi", "workflow"]
    ops = doc["operations"]
    assert ops["budget.send.budget.money.moved"]["action"] == "send"
    assert ops["workflow.receive.budget.money.moved"]["x-pitcrew-schema-versions"] == [1, 2]
    message = doc["components"]["messages"]["BudgetMoneyMoved"]
    assert message["payload"]["properties"]["data"] == {"$ref": "#/components/schemas/BudgetMoved"}
    assert doc["components"]["schemas"]["BudgetMoved"]["required"] == ["line_id", "amount"]


class Inner(EventData):
    n: int


class Outer(EventData):
    inner: Inner


def test_two_services_may_name_their_models_alike_without_overwriting_each_other():
    a = Catalogue("budget", (EventSpec("budget.a.happened", Outer, "a"),))
    b = Catalogue("kpi", (EventSpec("kpi.b.happened", Outer, "b"),))
    schemas = asyncapi.document([a, b])["components"]["schemas"]
    assert {"BudgetOuter", "BudgetInner", "KpiOuter", "KpiInner"} <= set(schemas)
    assert schemas["KpiOuter"]["properties"]["inner"] == {"$ref": "#/components/schemas/KpiInner"}
