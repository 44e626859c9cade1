"""The layers of the stack and the rules between them: the lasagna the spaghetti should become.

Each tool sits in at most one layer (`tools.layer`, a key of the configuration). The configuration is
one versioned document: the layers (bottom first) and rules of two kinds: `only_through` (tools of a
layer exchange data only with tools of another, e.g. engagement only through data) and `forbid` (no
flow from one layer to another). `violations` checks every live flow against the rules: pure, run
in the analysis's worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select

from services.registry import stack_schemas
from services.registry.models import LayerConfig, Tool
from shared.db import utcnow
from shared.errors import Conflict, Errors, PreconditionFailed
from shared.identity import Principal, ensure_unscoped
from shared.uow import UnitOfWork

WHAT = "The layers of the stack"
ROW = 1

DEFAULT = stack_schemas.LayersIn(
    layers=[
        stack_schemas.LayerIn(
            key="data", name="Data", description="Where customer and marketing data lives: CDP, warehouse"
        ),
        stack_schemas.LayerIn(key="orchestration", name="Orchestration", description="Journeys, automation, workflows"),
        stack_schemas.LayerIn(
            key="engagement", name="Engagement", description="Channels that reach people: email, ads, web"
        ),
        stack_schemas.LayerIn(key="analytics", name="Analytics", description="Reporting, BI, attribution"),
    ],
    rules=[
        stack_schemas.OnlyThrough(
            kind="only_through",
            layer="engagement",
            through="data",
            description="engagement tools exchange data only through the data layer",
        )
    ],
)


async def _stored(uow: UnitOfWork) -> LayerConfig | None:
    return await uow.get(LayerConfig, ROW)


async def current(uow: UnitOfWork) -> stack_schemas.LayersIn:
    """The configuration in force: the stored one, or the shipped default."""
    row = await _stored(uow)
    return DEFAULT if row is None else stack_schemas.LayersIn.model_validate(row.document)


async def keys(uow: UnitOfWork) -> list[str]:
    return [layer.key for layer in (await current(uow)).layers]


async def check_layer(uow: UnitOfWork, key: str | None, errors: Errors, field: str = "layer") -> None:
    if key is None:
        return
    known = await keys(uow)
    if key not in known:
        errors.add(field, f"{key!r} is not a layer; choose one of {', '.join(known)} (GET /v1/layers)", "unknown_layer")


async def tools_per_layer(uow: UnitOfWork) -> dict[str, int]:
    rows: list[Any] = list(
        await uow.execute(
            select(Tool.layer, func.count())
            .where(Tool.layer.is_not(None), Tool.lifecycle != "retired")
            .group_by(Tool.layer)
        )
    )
    return {str(r[0]): int(r[1]) for r in rows}


async def get_layers(uow: UnitOfWork) -> stack_schemas.Layers:
    row = await _stored(uow)
    config = await current(uow)
    return stack_schemas.Layers(
        **config.model_dump(),
        version=row.version if row else 0,
        updated_by=row.updated_by if row else None,
        updated_at=row.updated_at if row else None,
        tools=await tools_per_layer(uow),
    )


def check_document(body: stack_schemas.LayersIn) -> None:
    """Keys once each; every rule names layers of the document (a 422 naming the field)."""
    errors = Errors()
    seen: set[str] = set()
    for n, layer in enumerate(body.layers):
        if layer.key in seen:
            errors.add(f"layers[{n}].key", f"{layer.key!r} appears more than once", "duplicate")
        seen.add(layer.key)
    for n, rule in enumerate(body.rules):
        named = (
            (("layer", rule.layer), ("through", rule.through))
            if isinstance(rule, stack_schemas.OnlyThrough)
            else (("from_layer", rule.from_layer), ("to_layer", rule.to_layer))
        )
        for field, key in named:
            if key not in seen:
                errors.add(f"rules[{n}].{field}", f"{key!r} is not one of the layers", "unknown_layer")
    errors.raise_if_any()


async def put_layers(
    uow: UnitOfWork, who: Principal, *, body: stack_schemas.LayersIn, expected_version: int | None
) -> stack_schemas.Layers:
    """Replace the configuration; a layer that tools still sit in cannot be dropped (409)."""
    ensure_unscoped(who, WHAT)
    check_document(body)
    query = select(LayerConfig).where(LayerConfig.id == ROW)
    if uow.dialect != "sqlite":
        query = query.with_for_update()
    row: LayerConfig | None = await uow.scalar(query)
    version = row.version if row else 0
    if expected_version is not None and expected_version != version:
        raise PreconditionFailed(
            f"The layers are at version {version}, not {expected_version}: reload them and try again.",
            current_version=version,
        )
    kept = {layer.key for layer in body.layers}
    in_use: list[Any] = list(
        await uow.execute(select(Tool.layer, func.count()).where(Tool.layer.is_not(None)).group_by(Tool.layer))
    )
    dropped = {str(r[0]): int(r[1]) for r in in_use if r[0] not in kept}
    if dropped:
        raise Conflict(
            "Tools still sit in "
            + ", ".join(f"{k} ({n})" for k, n in sorted(dropped.items()))
            + ": move them to another layer before dropping it.",
            layers_in_use=dropped,
        )
    now = utcnow()
    if row is None:
        row = LayerConfig(id=ROW, document={}, version=0, updated_by=who.subject, updated_at=now)
        uow.add(row)
    row.document = body.model_dump(mode="json")
    row.version = version + 1
    row.updated_by, row.updated_at = who.subject, now
    await uow.flush()
    await uow.audit("layer_config", str(ROW), action="layers.replaced", after=row.document)
    return await get_layers(uow)


def violations(rules: Sequence[Any], tools: Iterable[Any], edges: Iterable[Any]) -> list[stack_schemas.Violation]:
    """Every (flow, rule) the flow breaks: `tools` have `id`, `layer`; `edges` have `id`, `from_tool_id`,
    `to_tool_id`, `direction`. A flow touching a tool in no layer is not judged. Pure."""
    if not rules:
        return []
    layer_of = {t.id: t.layer for t in tools}
    found: list[stack_schemas.Violation] = []
    for e in edges:
        a, b = layer_of.get(e.from_tool_id), layer_of.get(e.to_tool_id)
        if a is None or b is None:
            continue
        for n, rule in enumerate(rules):
            message = _breaks(rule, a, b, e.direction == "two_way")
            if message:
                found.append(
                    stack_schemas.Violation(
                        integration_id=e.id,
                        from_tool_id=e.from_tool_id,
                        to_tool_id=e.to_tool_id,
                        from_layer=a,
                        to_layer=b,
                        rule=n,
                        message=message,
                    )
                )
    return found


def _breaks(rule: Any, a: str, b: str, two_way: bool) -> str | None:
    if isinstance(rule, stack_schemas.OnlyThrough):
        for mine, other in ((a, b), (b, a)):
            if mine == rule.layer and other != rule.through:
                return f"{rule.layer} exchanges data only through {rule.through}, not with {other}"
        return None
    if (a, b) == (rule.from_layer, rule.to_layer) or (two_way and (b, a) == (rule.from_layer, rule.to_layer)):
        return f"no data flows from {rule.from_layer} to {rule.to_layer}"
    return None
