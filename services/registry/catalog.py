"""Import of the stack: a YAML catalogue (one document per tool, in the spirit of Backstage's
catalog-info files) or a flat CSV of tools (`export.py` writes both). No HTTP here.

An import is all or nothing: every document is validated first (a bad one is reported
by its 0-based index and field), then everything is written in the caller's transaction.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError
from sqlalchemy import select

from services.registry import integrations, schemas, stack_schemas, tools
from services.registry.contracts import Contracts
from services.registry.models import Tool
from shared.csvtext import read_csv
from shared.errors import Conflict, Errors, FieldError, Invalid
from shared.identity import Principal
from shared.uow import UnitOfWork

# libyaml's C loader when PyYAML was built with it (it is in our wheels), pure Python otherwise.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CSV_COLUMNS = [
    "name",
    "vendor",
    "category",
    "capabilities",
    "owner_team",
    "owner_person",
    "business_owner",
    "lifecycle",
    "time_class",
    "personal_data",
    "sso",
    "url",
    "notes",
    "layer",
]
MAX_DOCUMENTS = 5000
MAX_BODY_BYTES = 16 * 1024 * 1024  # an import's request body; 5,000 ordinary tools take about 1 MiB
# Collections (mappings, lists) inside one another. A catalogue document needs four (spec, contracts, one
# contract, ...); libyaml's constructor recurses once per level in C with no limit of its own and overflows
# the stack, killing the process, somewhere past 20,000 levels. Its event parser keeps its own stack, so
# the depth is checked on the events before anything is constructed.
MAX_DEPTH = 64
CSV_FIELD = {"spec.owner.team": "owner_team", "spec.owner.person": "owner_person"}


def parse_yaml(raw: bytes) -> list[stack_schemas.CatalogDocument]:
    try:
        text = raw.decode("utf-8")
        _check_depth(text)
        docs = [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except UnicodeDecodeError as exc:
        raise Invalid.on("body", f"the catalogue is not UTF-8 text: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise Invalid.on("body", f"the catalogue is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from exc
    return _validate(docs, "documents", stack_schemas.CatalogDocument.model_validate)


def _check_depth(text: str) -> None:
    """Refuse collections nested deeper than MAX_DEPTH, reading only parser events (no recursion)."""
    depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                where = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                raise Invalid.on(
                    "body", f"the catalogue nests lists and mappings more than {MAX_DEPTH} deep{where}", "too_deep"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_csv(raw: bytes) -> list[stack_schemas.CatalogDocument]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid.on("body", f"the CSV is not UTF-8 text: {exc}") from exc
    header, rows = read_csv(text)
    if "name" not in header or "category" not in header:
        raise Invalid.on(
            "body", f"the CSV needs a header row with at least name and category; columns: {', '.join(CSV_COLUMNS)}"
        )
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if unknown:
        raise Invalid.on("body", f"unknown CSV column(s) {', '.join(unknown)}; columns: {', '.join(CSV_COLUMNS)}")
    return _validate(rows, "rows", _row_document)


def _row_document(row: dict[str, Any]) -> stack_schemas.CatalogDocument:
    def cell(name: str) -> str | None:
        value = (row.get(name) or "").strip()
        return value or None

    spec: dict[str, Any] = {
        k: cell(k)
        for k in (
            "vendor",
            "category",
            "business_owner",
            "lifecycle",
            "time_class",
            "url",
            "notes",
            "personal_data",
            "sso",
            "layer",
        )
    }
    spec = {k: v for k, v in spec.items() if v is not None}
    caps = cell("capabilities")
    spec["capabilities"] = [c for c in (caps or "").replace("|", ";").split(";") if c.strip()]
    if cell("owner_team") or cell("owner_person"):
        spec["owner"] = {"team": cell("owner_team"), "person": cell("owner_person")}
    return stack_schemas.CatalogDocument.model_validate(
        {"kind": "Tool", "metadata": {"name": cell("name") or ""}, "spec": spec}
    )


def _validate(items: list[Any], label: str, parse: Any) -> list[stack_schemas.CatalogDocument]:
    if not items:
        raise Invalid.on("body", "the catalogue holds no tools")
    if len(items) > MAX_DOCUMENTS:
        raise Invalid.on("body", f"at most {MAX_DOCUMENTS} tools per import")
    errors = Errors()
    docs: list[stack_schemas.CatalogDocument] = []
    for index, item in enumerate(items):
        if label == "documents" and not isinstance(item, dict):
            errors.add(f"{label}[{index}]", "a catalogue document must be a mapping (apiVersion, kind, metadata, spec)")
            continue
        try:
            docs.append(parse(item))
        except ValidationError as exc:
            for field, msg, code in _problems(exc, label, index):
                errors.add(field, msg, code)
    names = [d.metadata.name for d in docs]
    for index, name in enumerate(names):
        if name in names[:index]:
            errors.add(
                f"{label}[{index}].metadata.name", f"{name!r} appears more than once in the catalogue", "duplicate"
            )
    if errors.items:
        first = errors.items[0]
        raise Invalid(
            f"{len(errors.items)} problem(s) in the catalogue, nothing was imported; first: {first.field}: "
            f"{first.message}",
            errors=errors.items,
        )
    return docs


def _loc(part: Any) -> str:
    return f"[{part}]" if isinstance(part, int) else str(part)


def _problems(exc: ValidationError, label: str, index: int, where: Any = None) -> list[tuple[str, str, str]]:
    """(field, message, code) of each error, named by where it is in the catalogue; `where` maps the
    location in the model that failed to the document path (default: the model is the document)."""
    out = []
    for err in exc.errors():
        loc = ".".join(_loc(p) for p in err["loc"]).replace(".[", "[")
        if where is not None:
            loc = where(loc)
        if label == "rows":  # name the CSV column, not the document path it was mapped to
            loc = CSV_FIELD.get(loc, loc.removeprefix("spec.").removeprefix("metadata."))
        out.append(
            (f"{label}[{index}].{loc}".replace(".[", "["), err["msg"].removeprefix("Value error, "), err["type"])
        )
    return out


def _build(model: type[Any], data: dict[str, Any], label: str, index: int, where: Any) -> Any:
    """Validate what a document turned into (a ToolIn, a ContractIn, ...); a refusal is a 422 naming the
    document's field, not a crash (the document passed its own validation, but the API's model may be
    stricter about a value copied into it)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = [FieldError(*p) for p in _problems(exc, label, index, where)]
        detail = "; ".join(f"{e.field}: {e.message}" for e in errs)
        raise Invalid(f"nothing was imported; {detail}", errors=errs) from exc


async def import_catalogue(
    uow: UnitOfWork,
    who: Principal,
    *,
    docs: list[stack_schemas.CatalogDocument],
    contracts: Contracts,
    label: str = "documents",
) -> stack_schemas.ImportResult:
    """Create every tool, then its contracts, then the integrations (which name tools) in one transaction."""
    bodies = [_tool_body(doc, label, index) for index, doc in enumerate(docs)]

    def located(index: int) -> _located:
        return _located(f"{label}[{index}]" + (".spec" if label == "documents" else ""), f"{label}[{index}]")

    # All the tools in a few statements (one by one, 5,000 of them took half a minute).
    views = await tools.create_tools(uow, who, bodies=bodies, located=located)
    ids = {view.name: view.id for view in views}
    made = {"contracts": 0, "integrations": 0}
    for index, doc in enumerate(docs):
        tool_id = ids[doc.metadata.name]
        for ci, contract in enumerate(doc.spec.contracts):
            terms = _build(
                schemas.ContractIn,
                {"tool_id": tool_id, **contract.model_dump()},
                label,
                index,
                lambda loc, ci=ci: f"spec.contracts[{ci}].{loc}",
            )
            with _located(f"{label}[{index}].spec.contracts[{ci}]", f"{label}[{index}]"):
                await contracts.create(uow, who, body=terms)
            made["contracts"] += 1
        for ii, edge in enumerate(doc.spec.integrations):
            await _integrate(uow, who, edge, tool_id, ids, label, index, ii)
            made["integrations"] += 1
    return stack_schemas.ImportResult(tools=len(views), **made, tool_ids=ids)


def _tool_body(doc: stack_schemas.CatalogDocument, label: str, index: int) -> schemas.ToolIn:
    """The ToolIn a document describes; its notes come from metadata.description when spec.notes is empty."""
    fields = doc.spec.model_dump(exclude={"contracts", "integrations"})
    notes_from = "spec.notes"
    if doc.metadata.description and not fields.get("notes"):
        fields["notes"], notes_from = doc.metadata.description, "metadata.description"

    def tool_field(loc: str) -> str:
        top = loc.split(".")[0].split("[")[0]
        return {"name": "metadata.name", "notes": notes_from}.get(top, f"spec.{loc}")

    body: schemas.ToolIn = _build(schemas.ToolIn, {"name": doc.metadata.name, **fields}, label, index, tool_field)
    return body


async def _integrate(
    uow: UnitOfWork,
    who: Principal,
    edge: stack_schemas.CatalogIntegration,
    tool_id: str,
    ids: dict[str, str],
    label: str,
    index: int,
    ii: int,
) -> None:
    """The document's integration `ii`: its `to` names a tool of the catalogue or of the registry."""
    where = f"{label}[{index}].spec.integrations[{ii}]"
    to_id = ids.get(edge.to) or await uow.scalar(select(Tool.id).where(Tool.name == edge.to))
    if to_id is None:
        raise Invalid.on(f"{where}.to", f"no tool named {edge.to!r} in the catalogue or the registry", "unknown_tool")
    edge_in = _build(
        schemas.IntegrationIn,
        {"from_tool_id": tool_id, "to_tool_id": to_id, **edge.model_dump(exclude={"to"})},
        label,
        index,
        lambda loc: f"spec.integrations[{ii}].{loc}",
    )
    with _located(where, f"{label}[{index}]"):
        await integrations.create_integration(uow, who, body=edge_in)


class _located:
    """Prefix the fields of a domain error with where in the catalogue it happened."""

    def __init__(self, prefix: str, doc: str):
        self.prefix, self.doc = prefix, doc

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, Invalid):
            errs = [FieldError(f"{self.prefix}.{e.field}", e.message, e.code) for e in exc.errors]
            detail = "; ".join(f"{e.field}: {e.message}" for e in errs) or f"{self.doc}: {exc.detail}"
            raise Invalid(f"nothing was imported; {detail}", errors=errs) from exc
        if isinstance(exc, Conflict):
            raise Conflict(f"nothing was imported; {self.doc}: {exc.detail}", **exc.extra) from exc
