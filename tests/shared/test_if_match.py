"""If-Match: the version a client read, parsed the same way in every service."""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from shared.errors import Invalid
from shared.http import MAX_VERSION, parse_if_match


@pytest.mark.parametrize(
    ("value", "version"), [('"3"', 3), ('W/"3"', 3), ("3", 3), (None, None), (f'"{MAX_VERSION}"', MAX_VERSION)]
)
def test_a_version_this_api_issued_is_read(value: str | None, version: int | None) -> None:
    assert parse_if_match(value) == version


@pytest.mark.parametrize("value", ['"²"', '"٣"', '"-1"', '"3.0"', '""', f'"{MAX_VERSION + 1}"', '"' + "9" * 5000 + '"'])
def test_anything_else_is_a_422_on_the_header(value: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_if_match(value)
    assert caught.value.errors[0].field == "header.If-Match"


def test_a_write_that_needs_a_version_refuses_to_go_without_one() -> None:
    with pytest.raises(HTTPException) as caught:
        parse_if_match(None, required=True, what="plan")
    assert caught.value.status_code == 428 and "plan's version" in caught.value.detail
