"""CSV uploads read the same way in every service."""

from __future__ import annotations

import csv
import io
from typing import Any

from shared.errors import Invalid


def read_csv(text: str, field: str = "body") -> tuple[list[str], list[dict[str | None, Any]]]:
    """The header (names stripped) and every record of a CSV text, as `csv.DictReader` gives them
    (surplus cells under the key None). Why here: newlines inside quoted cells and bare CRs are read
    as the csv module intends only with `newline=""`, and a file the module cannot read (a cell over
    its 131,072-character limit) must be a 422 on `field`, not an error escaping the importer."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        rows = list(reader)
    except csv.Error as exc:
        where = f"the record after line {reader.line_num}"
        raise Invalid.on(field, f"is not CSV that can be read ({where}): {exc}") from exc
    return header, rows
