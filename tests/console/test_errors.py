"""Problems in plain words: the field named as a person reads it, and what to do."""

from __future__ import annotations

from console.api import ApiProblem
from console.web import explain


def test_spreadsheet_rows_and_query_fields_read_plainly():
    problem = ApiProblem(
        422,
        "Validation failed",
        "2 bad row(s); nothing was imported.",
        [{"field": "rows[2].period", "message": "is not a month"}, {"field": "query.metrics", "message": "at most 5"}],
        part="budget",
    )
    shown = explain(problem)
    assert shown["fields"] == [
        {"field": "row 2, period", "message": "is not a month"},
        {"field": "metrics", "message": "at most 5"},
    ]
    assert shown["what_to_do"].startswith("Some fields are not right")


def test_an_unknown_status_gets_advice_too():
    assert explain(ApiProblem(502, "Bad gateway", "upstream"))["what_to_do"].startswith("That part of Pitcrew")
    assert explain(ApiProblem(418, "Teapot", "no"))["what_to_do"].startswith("Check what you entered")
