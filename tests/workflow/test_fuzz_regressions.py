"""Cases `make fuzz` found: each answered 500 before its fix."""

from __future__ import annotations

import pytest

from tests.workflow.conftest import MARKETER

pytestmark = pytest.mark.db


@pytest.mark.parametrize("path", ["/v1/reports/suppliers", "/v1/reports/teams", "/v1/calendar"])
@pytest.mark.parametrize(
    ("params", "field"),
    [({"from": "", "to": "2027-11-30"}, "query.from"), ({"from": "2027-10-01", "to": ""}, "query.to")],
)
async def test_an_empty_from_or_to_is_a_422_naming_it(wf, path, params, field):
    """An empty `from=` or `to=` satisfies FastAPI's "required" but names no instant."""
    r = await wf.call("GET", path, MARKETER, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"][0]["field"] == field
