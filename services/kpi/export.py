"""Answers as files: series, scorecard, attribution and the semantic query as CSV or Parquet, one row per
point, metric, channel or table row.

Each answer is first described as a table (`Table`: typed columns, rows of the answer's values, file
metadata), then written by `csv_response` or `parquet_response`. Both stream: CSV in chunks of
CHUNK_ROWS rows, Parquet one row group of ROW_GROUP_ROWS rows at a time (a row group is written
whole, so it is the unit of streaming), each chunk sent as soon as it is written rather than the file
built as one body. Starlette iterates these synchronous generators in a worker thread, off the event loop.

CSV: values are the JSON answer's decimal strings (null is an empty cell); text cells that a spreadsheet
would read as a formula (starting with =, +, -, @, tab or carriage return: a dimension value such as
"=HYPERLINK(...)") get a leading apostrophe; decimal columns are never touched, so "-12.50" stays a number.
Parquet: typed columns (decimals as DECIMAL(38, 6), or DECIMAL(76, 6) for a column holding a value of
more than 32 integer digits; dates as DATE; counts as INT64; flags as BOOLEAN), text unescaped, and the
answer's metric versions and parameters in the file's key-value metadata (`pitcrew.*` keys).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import Request
from fastapi.responses import StreamingResponse

from services.kpi.attribution import MODELS

CHUNK_ROWS = 500
ROW_GROUP_ROWS = 10_000
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PARQUET = "application/vnd.apache.parquet"
Kind = Literal["text", "decimal", "date", "int", "bool", "float"]
Wanted = Literal["json", "csv", "parquet"]


def wanted(request: Request, format: str | None) -> Wanted:
    """`format=` when given; otherwise what `Accept` names first of text/csv and Parquet; otherwise JSON."""
    if format in ("json", "csv", "parquet"):
        return format  # type: ignore[return-value]
    accept = request.headers.get("accept", "").lower()
    at = {kind: accept.find(media) for kind, media in (("csv", "text/csv"), ("parquet", PARQUET))}
    found = sorted((pos, kind) for kind, pos in at.items() if pos >= 0)
    return found[0][1] if found else "json"  # type: ignore[return-value]


def wants_csv(request: Request, format: str | None) -> bool:
    """`format=csv`, or no `format` and `Accept: text/csv` (before any Parquet)."""
    return wanted(request, format) == "csv"


def safe(text: str | None) -> str | None:
    """A text cell a spreadsheet will not evaluate."""
    return "'" + text if text and text.startswith(FORMULA_START) else text


@dataclass
class Table:
    """An answer as a file's table: column names and kinds, a generator of rows, the file's metadata."""

    columns: list[tuple[str, Kind]]
    rows: Callable[[], Iterator[list[Any]]]
    metadata: dict[str, str] = field(default_factory=dict)


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


def _csv_cell(kind: Kind, v: Any) -> Any:
    if v is None:
        return None
    if kind == "text":
        return safe(str(v))
    if kind == "bool":
        return "true" if v else "false"
    return v


def csv_chunks(t: Table) -> Iterator[str]:
    kinds = [k for _, k in t.columns]
    header = [safe(name) or "" for name, _ in t.columns]
    return render(header, ([_csv_cell(k, v) for k, v in zip(kinds, row, strict=True)] for row in t.rows()))


# ---------------------------------------------------------------- Parquet


class _Sink(io.RawIOBase):
    """Where the Parquet writer writes: keeps what was written since the last `take` and counts every byte
    (the writer asks the position to record the row groups' offsets in the footer)."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []
        self._pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._chunks.append(data)
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def _decimal_type(values: Iterable[Any]) -> pa.DataType:
    """DECIMAL(38, 6) unless a value has more than 32 digits before the point (answers stop at 10^40)."""
    for v in values:
        if v is not None and Decimal(v).adjusted() >= 32:
            return pa.decimal256(76, 6)
    return pa.decimal128(38, 6)


ARROW: dict[str, pa.DataType] = {
    "text": pa.string(),
    "date": pa.date32(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "float": pa.float64(),
}


def _arrow_value(kind: Kind, v: Any) -> Any:
    if v is None:
        return None
    if kind == "decimal":
        return Decimal(v)
    if kind == "date":
        return dt.date.fromisoformat(v)
    if kind == "text":
        return str(v)
    return v


def schema_of(t: Table) -> pa.Schema:
    """The file's schema: decimal columns sized to their values (one pass over the rows), the metadata."""
    decimals = [i for i, (_, k) in enumerate(t.columns) if k == "decimal"]
    sized: dict[int, pa.DataType] = {}
    if decimals:
        rows = list(t.rows())
        sized = {i: _decimal_type(r[i] for r in rows) for i in decimals}
    fields = [pa.field(name, sized.get(i) or ARROW[kind]) for i, (name, kind) in enumerate(t.columns)]
    return pa.schema(fields, metadata=t.metadata)


def parquet_chunks(t: Table, schema: pa.Schema, row_group_rows: int | None = None) -> Iterator[bytes]:
    """The Parquet file in pieces: the header and each row group as soon as it is written, then the footer."""
    row_group_rows = row_group_rows or ROW_GROUP_ROWS
    sink = _Sink()
    kinds = [k for _, k in t.columns]
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        batch: list[list[Any]] = []
        for row in t.rows():
            batch.append(row)
            if len(batch) == row_group_rows:
                writer.write_table(_table(batch, kinds, schema), row_group_size=row_group_rows)
                batch = []
                yield sink.take()
        if batch:
            writer.write_table(_table(batch, kinds, schema), row_group_size=row_group_rows)
    yield sink.take()


def _table(rows: list[list[Any]], kinds: Sequence[Kind], schema: pa.Schema) -> pa.Table:
    columns = [[_arrow_value(k, r[i]) for r in rows] for i, k in enumerate(kinds)]
    return pa.table([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema=schema)


def file_response(t: Table, kind: Literal["csv", "parquet"], stem: str, headers: dict[str, str]) -> StreamingResponse:
    """The table streamed as a CSV or Parquet attachment, with the answer's own headers (versions, model ...)."""
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{kind}"', **headers}
    if kind == "csv":
        return StreamingResponse(csv_chunks(t), media_type="text/csv; charset=utf-8", headers=headers)
    schema = schema_of(t)  # before the first byte: a bad table is an error answer, not a cut-off file
    return StreamingResponse(parquet_chunks(t, schema), media_type=PARQUET, headers=headers)


def csv_response(chunks: Iterator[str], filename: str, headers: dict[str, str]) -> StreamingResponse:
    """CSV chunks streamed as an attachment (kept for callers that render their own chunks)."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', **headers}
    return StreamingResponse(chunks, media_type="text/csv; charset=utf-8", headers=headers)


def _about(answer: dict[str, Any], bulk: str) -> str:
    """The answer without its rows, as JSON: the parameters that reproduce it."""
    return json.dumps({k: v for k, v in answer.items() if k != bulk}, sort_keys=True, default=str)


# ---------------------------------------------------------------- the answers as tables


def _compare_columns(kinds: Sequence[str], fields: Sequence[tuple[str, Kind]]) -> list[tuple[str, Kind]]:
    return [(f"{k}_{f}", kind) for k in kinds for f, kind in fields]


COHORT: list[tuple[str, Kind]] = [
    ("entered", "int"),
    ("converted", "int"),
    ("median_days", "decimal"),
    ("p90_days", "decimal"),
    ("complete", "bool"),
]


def has_cohorts(answer: dict[str, Any]) -> bool:
    """A conversion metric's series (its points carry their cohort)."""
    return any("cohort" in p for s in answer["series"][:1] for p in s["points"][:1])


def _cohort_cells(c: dict[str, Any] | None) -> list[Any]:
    if c is None:
        return [None] * len(COHORT)
    return [c[name] for name, _ in COHORT]


def series_table(answer: dict[str, Any], group_by: Sequence[str], compare: Sequence[str]) -> Table:
    """One row per group and bucket: the group's dimensions, bucket, period, value, target columns, changes
    (a conversion metric's cohort: entered, converted, median_days, p90_days, complete), metric and version."""
    fields: list[tuple[str, Kind]] = [("bucket", "date"), ("value", "decimal")]
    fields += [("change", "decimal"), ("percent_change", "decimal")]
    cohort = has_cohorts(answer)
    columns: list[tuple[str, Kind]] = [(g, "text") for g in group_by]
    columns += [("bucket", "date"), ("period", "text"), ("value", "decimal"), ("target", "decimal")]
    columns += [("variance", "decimal"), ("attainment", "decimal"), *_compare_columns(compare, fields)]
    columns += COHORT if cohort else []
    columns += [("metric", "text"), ("version", "int")]
    tail = [answer["metric"], answer["version"]]

    def rows() -> Iterator[list[Any]]:
        for s in answer["series"]:
            dims = [s["group"].get(k) for k in group_by]
            for p in s["points"]:
                row = [*dims, p["bucket"], p.get("period"), p["value"]]
                row += [p.get("target"), p.get("variance"), p.get("attainment")]
                row += [p["compare"][k][f] for k in compare for f, _ in fields]
                yield row + (_cohort_cells(p.get("cohort")) if cohort else []) + tail

    meta = {
        "pitcrew.metric": answer["metric"],
        "pitcrew.metric_version": str(answer["version"]),
        "pitcrew.unit": answer["unit"],
        "pitcrew.answer": _about(answer, "series"),
    }
    return Table(columns, rows, meta)


def series_csv(answer: dict[str, Any], group_by: Sequence[str], compare: Sequence[str]) -> Iterator[str]:
    return csv_chunks(series_table(answer, group_by, compare))


def scorecard_table(answer: dict[str, Any], compare: Sequence[str]) -> Table:
    """One row per metric, with the period, the metric's definition version and its changes."""
    head: list[tuple[str, Kind]] = [("period", "text"), ("from", "date"), ("to", "date"), ("elapsed", "float")]
    head += [("metric", "text"), ("name", "text"), ("version", "int"), ("unit", "text"), ("direction", "text")]
    values = ["actual", "target", "variance", "attainment", "projected"]
    cols: list[tuple[str, Kind]] = [(c, "decimal") for c in values] + [("at_risk", "bool"), ("target_id", "text")]
    fields: list[tuple[str, Kind]] = [("period", "text"), ("from", "date"), ("to", "date"), ("value", "decimal")]
    fields += [("change", "decimal"), ("percent_change", "decimal")]
    cohort = any("cohort" in i for i in answer["items"])

    def rows() -> Iterator[list[Any]]:
        for i in answer["items"]:
            row = [answer["period"], answer["from"], answer["to"], answer["elapsed"], i["metric"], i["name"]]
            row += [i["version"], i["unit"], i["direction"], *(i[c] for c in values), i["at_risk"], i["target_id"]]
            row += [i["compare"][k][f] for k in compare for f, _ in fields]
            yield row + (_cohort_cells(i.get("cohort")) if cohort else [])

    columns = [*head, *cols, *_compare_columns(compare, fields), *(COHORT if cohort else [])]
    meta = {"pitcrew.metric_versions": versions_of(answer["items"]), "pitcrew.answer": _about(answer, "items")}
    return Table(columns, rows, meta)


def versions_of(items: Iterable[dict[str, Any]], key: str = "metric") -> str:
    return ",".join(f"{i[key]}={i['version']}" for i in items)


def scorecard_csv(answer: dict[str, Any], compare: Sequence[str]) -> Iterator[str]:
    return csv_chunks(scorecard_table(answer, compare))


def attribution_table(answer: dict[str, Any]) -> Table:
    """One row per channel (or campaign): the chosen model's credit, the range across models, every model's
    credit and, with ci=, the bootstrap interval."""
    group = answer.get("group_by", "channel")
    boot = "ci" in answer
    columns: list[tuple[str, Kind]] = [("model", "text"), ("from", "date"), ("to", "date"), (group, "text")]
    columns += [(c, "decimal") for c in ("credit", "min", "max", *MODELS)]
    columns += [("ci_low", "decimal"), ("ci_high", "decimal")] if boot else []

    def rows() -> Iterator[list[Any]]:
        for c in answer["credits"]:
            row = [answer["model"], answer["from"], answer["to"], c[group], c["credit"], c["min"], c["max"]]
            row += [c["by_model"][m] for m in MODELS]
            yield row + ([c["interval"]["low"], c["interval"]["high"]] if boot else [])

    meta = {"pitcrew.attribution_model": answer["model"], "pitcrew.answer": _about(answer, "credits")}
    return Table(columns, rows, meta)


def attribution_csv(answer: dict[str, Any]) -> Iterator[str]:
    return csv_chunks(attribution_table(answer))


def query_table(answer: dict[str, Any]) -> Table:
    """The semantic query's table: a column per bucket, dimension and metric, a row per bucket and group."""
    kinds: dict[str, Kind] = {"time": "date", "dimension": "text", "metric": "decimal"}
    names = [c["name"] for c in answer["columns"]]
    columns = [(c["name"], kinds[c["kind"]]) for c in answer["columns"]]
    metrics = [c for c in answer["columns"] if c["kind"] == "metric"]
    meta = {
        "pitcrew.metric_versions": versions_of(metrics, "name"),
        "pitcrew.truncated": "true" if answer["truncated"] else "false",
        "pitcrew.answer": _about(answer, "rows"),
    }
    return Table(columns, lambda: ([row[n] for n in names] for row in answer["rows"]), meta)


def query_csv(answer: dict[str, Any]) -> Iterator[str]:
    return csv_chunks(query_table(answer))
