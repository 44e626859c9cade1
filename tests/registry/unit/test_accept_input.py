"""Accepting a discovery candidate reads capabilities as creating a tool does (found by `make fuzz`: an
empty tag passed the accept body and failed building the tool, a 500)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.registry.schemas import ToolIn
from services.registry.stack_schemas import AcceptIn


@pytest.mark.parametrize("tags", [[""], ["crm", "  "], ["x" * 101]])
def test_a_bad_tag_is_refused_by_the_accept_body_itself(tags):
    with pytest.raises(ValidationError, match="capabilities"):
        AcceptIn(category="crm", capabilities=tags)


def test_the_accepted_tags_are_the_tools_tags():
    body = AcceptIn(category="crm", capabilities=[" CRM", "crm", "Email"])
    tool = ToolIn(name="Rocket", **body.model_dump(exclude={"name"}))
    assert body.capabilities == tool.capabilities == ["crm", "email"]
