"""The workflow's refusals of a decision, in plain words."""

from __future__ import annotations

from console.api import ApiProblem
from console.refusals import not_visible, plain


def test_four_eyes_names_the_requester():
    problem = ApiProblem(403, "Forbidden", "Four eyes: the requester cannot decide on their own request.")
    text = plain(problem, scopes=[], requester="petra")
    assert text is not None and "four-eyes rule" in text and "petra made this request" in text


def test_a_delegation_to_the_requester_is_the_same_rule():
    problem = ApiProblem(
        422, "Invalid", "bad", errors=[{"field": "to_user", "message": "cannot be the requester (four eyes)"}]
    )
    text = plain(problem, scopes=["region:EMEA"], to_user="petra")
    assert text is not None and "hand this request to petra" in text


def test_region_scopes_name_both_regions():
    problem = ApiProblem(
        403,
        "Forbidden",
        "Your scopes (region:APAC) do not cover this request's context; someone whose scopes do must decide it.",
    )
    text = plain(problem, scopes=["region:APAC"], context={"region": "EMEA", "channel": "search"})
    assert text is not None and "(region:APAC)" in text and "for region EMEA" in text


def test_other_problems_keep_the_generic_advice():
    assert plain(ApiProblem(409, "Conflict", "You have already approved this task."), scopes=[]) is None
    assert "region:APAC" in not_visible(["region:APAC"])
