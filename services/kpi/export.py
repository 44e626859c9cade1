"""Answers as CSV: series, scorecard, attribution and the semantic query, one row per point, metric, channel
or table row.

Rows are rendered lazily, a few hundred at a time, so a day-grain series of many groups is sent
as it is written rather than built as one string. Values are the JSON answer's decimal strings
(null is an empty cell). Text cells that a spreadsheet would read as a formula (starting with
=, +, -, @, tab or carriage return: a dimension value such as "=HYPERLINK(...)") get a leading
apostrophe; decimal columns are never touched, so "-12.50" stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from services.kpi.attribution import MODELS

CHUNK_ROWS = 500
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def wants_csv(request: Request, format: str | None) -> bool:
    """`format=csv`, or no `format` and `Accept: text/csv`."""
    if format is not None:
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "").lower()


def csv_response(chunks: Iterator[str], filename: str, headers: dict[str, str]) -> StreamingResponse:
    """The CSV chunks streamed as an attachment, with the answer's own headers (versions, model ...)."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', **headers}
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8", headers=headers)


def safe(text: str | None) -> str | None:
    """A text cell a spreadsheet will not evaluate."""
    return "'" + text if text and text.startswith(FORMULA_START) else text


def render(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """CSV text in chunks of CHUNK_ROWS rows (RFC 4180 quoting, \\r\\n line ends), the header first."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    n = 0
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
        n += 1
        if n % CHUNK_ROWS == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def _compare_columns(kinds: Sequence[str], fields: Sequence[str]) -> list[str]:
    return [f"{k}_{f}" for k in kinds for f in fields]


COHORT = ("entered", "converted", "median_days", "p90_days", "complete")


def has_cohorts(answer: dict[str, Any]) -> bool:
    """A conversion metric's series (its points carry their cohort)."""
    return any("cohort" in p for s in answer["series"][:1] for p in s["points"][:1])


def _cohort_cells(c: dict[str, Any] | None) -> list[Any]:
    if c is None:
        return [None] * len(COHORT)
    return [c["entered"], c["converted"], c["median_days"], c["p90_days"], "true" if c["complete"] else "false"]


def series_csv(answer: dict[str, Any], group_by: Sequence[str], compare: Sequence[str]) -> Iterator[str]:
    """One row per group and bucket: the group's dimensions, bucket, period, value, target columns, changes
    (and a conversion metric's cohort: entered, converted, median_days, p90_days, complete)."""
    fields = ("bucket", "value", "change", "percent_change")
    cohort = has_cohorts(answer)
    header = [*group_by, "bucket", "period", "value", "target", "variance", "attainment"]
    header += _compare_columns(compare, fields)
    header += list(COHORT) if cohort else []

    def rows() -> Iterator[list[Any]]:
        for s in answer["series"]:
            dims = [safe(s["group"].get(k)) for k in group_by]
            for p in s["points"]:
                row = [*dims, p["bucket"], p.get("period"), p["value"]]
                row += [p.get("target"), p.get("variance"), p.get("attainment")]
                row += [p["compare"][k][f] for k in compare for f in fields]
                yield row + (_cohort_cells(p.get("cohort")) if cohort else [])

    return render(header, rows())


def scorecard_csv(answer: dict[str, Any], compare: Sequence[str]) -> Iterator[str]:
    """One row per metric, with the period, the metric's definition version and its changes."""
    head = ["period", "from", "to", "elapsed", "metric", "name", "version", "unit", "direction"]
    cols = ["actual", "target", "variance", "attainment", "projected", "at_risk", "target_id"]
    fields = ("period", "from", "to", "value", "change", "percent_change")
    cohort = any("cohort" in i for i in answer["items"])

    def rows() -> Iterator[list[Any]]:
        for i in answer["items"]:
            row = [answer["period"], answer["from"], answer["to"], answer["elapsed"], i["metric"], safe(i["name"])]
            row += [i["version"], i["unit"], i["direction"], *(i[c] for c in cols[:5])]
            row += ["true" if i["at_risk"] else "false", i["target_id"]]
            row += [i["compare"][k][f] for k in compare for f in fields]
            yield row + (_cohort_cells(i.get("cohort")) if cohort else [])

    return render([*head, *cols, *_compare_columns(compare, fields), *(COHORT if cohort else ())], rows())


def attribution_csv(answer: dict[str, Any]) -> Iterator[str]:
    """One row per channel (or campaign): the chosen model's credit, the range across models, every model's
    credit and, with ci=, the bootstrap interval."""
    group = answer.get("group_by", "channel")
    boot = ["ci_low", "ci_high"] if "ci" in answer else []
    header = ["model", "from", "to", group, "credit", "min", "max", *MODELS, *boot]

    def rows() -> Iterator[list[Any]]:
        for c in answer["credits"]:
            row = [answer["model"], answer["from"], answer["to"], safe(c[group]), c["credit"], c["min"], c["max"]]
            row += [c["by_model"][m] for m in MODELS]
            yield row + ([c["interval"]["low"], c["interval"]["high"]] if boot else [])

    return render(header, rows())


def query_csv(answer: dict[str, Any]) -> Iterator[str]:
    """The semantic query's table: a column per bucket, dimension and metric, a row per bucket and group."""
    columns = answer["columns"]
    header = [safe(c["name"]) or "" for c in columns]

    def rows() -> Iterator[list[Any]]:
        for row in answer["rows"]:
            yield [row[c["name"]] if c["kind"] != "dimension" else safe(row[c["name"]]) for c in columns]

    return render(header, rows())
