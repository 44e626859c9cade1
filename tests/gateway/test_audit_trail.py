"""The merged audit trail's parameters: every source can be chosen, and a cursor the caller left empty
is no cursor (found by `make fuzz`: `?cursor=` was a 500)."""

from __future__ import annotations

import pytest

from gateway import audit
from gateway.settings import SERVICE_NAMES
from shared.errors import Invalid


def test_every_service_is_a_source_of_the_trail():
    assert set(audit.SOURCES) == {"gateway", *SERVICE_NAMES}


def test_an_empty_cursor_starts_from_the_newest_and_a_forged_one_is_refused():
    sources = list(audit.SOURCES)
    assert audit.positions("", sources) == dict.fromkeys(sources, audit.START)
    assert audit.positions(None, sources) == dict.fromkeys(sources, audit.START)
    with pytest.raises(Invalid):
        audit.positions("bm90IGEgY3Vyc29y", sources)
