"""Request types: an intake form (JSON Schema, draft 2020-12) and the definition a request starts,
published in versions like definitions and never changed.

Publishing checks the form against the meta-schema (regexes included), that it describes an
object, that every `$ref` is local and resolves (a remote one would be fetched at submission, an
unresolvable one would fail every request), and that the definition exists. A request's data is
checked against the type's current form, every bad field named `data.<path>`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012
from sqlalchemy import and_, func, insert, select
from sqlalchemy.exc import IntegrityError

from services.workflow.instances import new_id
from services.workflow.models import definitions, request_types
from services.workflow.request_schemas import RequestTypeIn, RequestTypeOut, RequestTypePage
from shared.db import utcnow
from shared.errors import Conflict, Errors, Invalid, NotFound
from shared.identity import Principal
from shared.pagination import decode_cursor, encode_cursor
from shared.uow import UnitOfWork

_META = Draft202012Validator(Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)
MAX_ERRORS = 50  # bad fields named per answer; the rest are implied


@dataclass(frozen=True, slots=True)
class RequestType:
    """One published version of a request type (a row of `request_types`)."""

    id: str
    key: str
    version: int
    name: str
    description: str | None
    form: dict[str, Any]
    definition_key: str
    created_at: dt.datetime
    created_by: str

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RequestType:
        return cls(**{k: row[k] for k in cls.__slots__})

    def view(self) -> RequestTypeOut:
        return RequestTypeOut.model_validate(self, from_attributes=True)


# --- publishing -------------------------------------------------------------------------------------


async def create_request_type(
    uow: UnitOfWork, who: Principal, *, body: RequestTypeIn, version: int | None = None
) -> RequestTypeOut:
    """Check the form and the definition (all reasons at once) and publish the key's next version (or
    exactly `version`, a Conflict when it exists: how replicas ship the built-in types once)."""
    errors = form_problems(body.form)
    if await uow.scalar(select(definitions.c.id).where(definitions.c.key == body.definition_key).limit(1)) is None:
        errors.add("definition_key", f"no definition {body.definition_key!r}")
    errors.raise_if_any()
    if version is None:
        current = await uow.scalar(select(func.max(request_types.c.version)).where(request_types.c.key == body.key))
        version = (current or 0) + 1
    row = {
        "id": new_id(),
        "key": body.key,
        "version": version,
        "name": body.name,
        "description": body.description,
        "form": body.form,
        "definition_key": body.definition_key,
        "created_at": utcnow(),
        "created_by": who.subject,
    }
    try:
        async with uow.begin_nested():
            await uow.execute(insert(request_types).values(**row))
    except IntegrityError as exc:
        raise Conflict(f"Another version of {body.key!r} was published at the same moment; retry.") from exc
    return RequestType.from_row(row).view()


def form_problems(form: Mapping[str, Any]) -> Errors:
    """Every reason `form` cannot be an intake form, each named `form.<path>`."""
    errors = Errors()
    for err in sorted(_META.iter_errors(form), key=lambda e: list(map(str, e.absolute_path)))[:MAX_ERRORS]:
        errors.add(_name("form", err.absolute_path), err.message)
    if errors.items:
        return errors
    if form.get("type") != "object":
        errors.add("form.type", 'must be "object": a request\'s data is an object of fields')
    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(dict(form)))
    for path, ref in _refs(form, ()):
        where = _name("form", path)
        if not ref.startswith("#"):
            errors.add(where, f"{ref!r} is not local; only references within the form (#/...) are allowed")
            continue
        try:
            resolver.lookup(ref)
        except Unresolvable:
            errors.add(where, f"{ref!r} points to nothing in the form")
    return errors


def _refs(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, reference) of every $ref and $dynamicRef in a schema (bounded by the JSON depth limit)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                yield (*path, key), value
            else:
                yield from _refs(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, (*path, i))


def _name(root: str, path: Any) -> str:
    """('form', ['properties', 'budget']) -> 'form.properties.budget' (list indexes as numbers)."""
    return ".".join([root, *map(str, path)])


# --- a request's data -------------------------------------------------------------------------------


def data_problems(form: Mapping[str, Any], data: Mapping[str, Any]) -> Errors:
    """Every way `data` breaks `form`, each named by the field it concerns: a missing required field
    and an unexpected one are named themselves (`data.budget`), not the object holding them."""
    errors = Errors()
    validator = Draft202012Validator(form, format_checker=Draft202012Validator.FORMAT_CHECKER)
    try:
        found = sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    except Unresolvable as exc:  # a published form's references resolve (form_problems); kept as a 422
        errors.add("data", f"the form cannot be applied: {exc}")
        return errors
    for err in found[:MAX_ERRORS]:
        for field, message in _named(err):
            errors.add(field, message, err.validator if isinstance(err.validator, str) else "invalid")
    return errors


def _named(err: ValidationError) -> list[tuple[str, str]]:
    path = list(err.absolute_path)
    inst = err.instance
    if err.validator == "required" and isinstance(inst, dict):
        missing = [p for p in err.validator_value if p not in inst]
        return [(_name("data", [*path, p]), "is required") for p in missing]
    if err.validator == "additionalProperties" and isinstance(inst, dict) and isinstance(err.schema, dict):
        known = set(err.schema.get("properties") or {})
        patterns = list(err.schema.get("patternProperties") or {})
        extra = [k for k in inst if k not in known and not any(re.search(p, k) for p in patterns)]
        if extra:
            return [(_name("data", [*path, k]), "is not a field of this form") for k in extra]
    return [(_name("data", path), err.message)]


# --- reading ----------------------------------------------------------------------------------------


async def get_request_type(uow: UnitOfWork, key: str, version: int | None = None) -> RequestType:
    q = select(request_types).where(request_types.c.key == key)
    q = q.where(request_types.c.version == version) if version else q.order_by(request_types.c.version.desc())
    row = (await uow.execute(q.limit(1))).mappings().first()
    if row is None:
        raise NotFound(f"No request type {key!r}" + (f" version {version}." if version else "."))
    return RequestType.from_row(row)


async def type_to_submit(uow: UnitOfWork, key: str) -> RequestType:
    """The current version of the type a request names; an unknown one is a 422 naming the field."""
    try:
        return await get_request_type(uow, key)
    except NotFound as exc:
        raise Invalid.on("type_key", f"no request type {key!r}") from exc


async def list_request_types(uow: UnitOfWork, *, limit: int, cursor: str | None) -> RequestTypePage:
    """Latest version of each key, by key."""
    latest = (
        select(request_types.c.key, func.max(request_types.c.version).label("v"))
        .group_by(request_types.c.key)
        .subquery()
    )
    q = (
        select(request_types)
        .join(latest, and_(request_types.c.key == latest.c.key, request_types.c.version == latest.c.v))
        .order_by(request_types.c.key)
    )
    after = decode_cursor(cursor)
    if after:
        q = q.where(request_types.c.key > str(after[0]))
    rows = [RequestType.from_row(r) for r in (await uow.execute(q.limit(limit + 1))).mappings().all()]
    nxt = encode_cursor(rows[limit - 1].key) if len(rows) > limit else None
    return RequestTypePage(items=[r.view() for r in rows[:limit]], next_cursor=nxt)
