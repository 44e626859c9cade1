"""CSV uploads: quoted newlines and bare CRs read as the csv module means, unreadable files a 422."""

from __future__ import annotations

import pytest

from shared.csvtext import read_csv
from shared.errors import Invalid


def test_headers_are_stripped_and_quoted_newlines_stay_in_their_cell() -> None:
    header, rows = read_csv(' code , name\nA,"two\nlines"\r\nB,x,surplus\n')
    assert header == ["code", "name"]
    assert rows == [{"code": "A", "name": "two\nlines"}, {"code": "B", "name": "x", None: ["surplus"]}]
    assert read_csv("") == ([], [])


def test_a_cell_over_the_csv_modules_limit_is_a_422_on_the_body() -> None:
    with pytest.raises(Invalid) as caught:
        read_csv('code,name\nA,"' + "x" * 200_000 + '"\n')
    assert caught.value.errors[0].field == "body" and "after line 1" in caught.value.detail


def test_a_bare_carriage_return_ends_a_record_as_in_any_old_mac_file() -> None:
    # Read without newline="", this raised csv.Error ("new-line character seen in unquoted field").
    assert read_csv("code,name\nA\rB,x\n")[1] == [{"code": "A", "name": None}, {"code": "B", "name": "x"}]
