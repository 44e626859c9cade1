"""Export of the stack in the catalogue's formats: YAML documents (with active contracts and outgoing
integrations) or a CSV of tools, so that an export imports into an empty registry unchanged.

Writing YAML is slow (PyYAML's representer is Python: about 1.5 ms a tool), so it runs in a worker
thread, bounded by `ExportLimits` (a 422 beyond them), and stops when the caller leaves.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from sqlalchemy import select

from services.registry.catalog import CSV_COLUMNS
from services.registry.models import Contract, Integration, Tool
from services.registry.reads import at_most
from shared.money import fmt
from shared.uow import UnitOfWork
from shared.work import Budget, Disconnectable, run_bounded

# libyaml's C emitter when PyYAML was built with it (it is in our wheels), pure Python otherwise.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
HINT = "retire and remove what is no longer used, or raise the limit (docs/registry.md)"
CHECK_EVERY = 100  # documents written between two looks at the budget

Format = Literal["yaml", "csv"]


@dataclass(frozen=True)
class ExportLimits:
    """At most `max_tools` tools (and five times as many active contracts, and integrations) in one
    export, written in at most `seconds`."""

    max_tools: int = 20_000
    seconds: float = 60.0


@dataclass(frozen=True)
class Stack:
    """The rows an export writes: every tool (by name), active contracts (by start), integrations."""

    tools: Sequence[Any]
    contracts: Sequence[Any]
    integrations: Sequence[Any]


async def load(uow: UnitOfWork, *, limits: ExportLimits) -> Stack:
    related = 5 * limits.max_tools
    return Stack(
        await at_most(uow, select(Tool.__table__).order_by(Tool.name), limits.max_tools, "tools", HINT),
        await at_most(
            uow,
            select(Contract.__table__).where(Contract.status == "active").order_by(Contract.start),
            related,
            "active contracts",
            HINT,
        ),
        await at_most(
            uow,
            select(Integration.__table__).order_by(Integration.created_at, Integration.id),
            related,
            "integrations",
            HINT,
        ),
    )


async def render(stack: Stack, format: Format, *, limits: ExportLimits, caller: Disconnectable | None = None) -> str:
    """The export as text, written in a worker thread; call it after the read transaction has ended."""
    budget = Budget(limits.seconds, what="export", hint=HINT)
    return await run_bounded(_write, stack, format, budget=budget, caller=caller, service="registry")


def _write(budget: Budget, stack: Stack, format: Format) -> str:
    docs = _checked(documents(stack), budget)
    return to_yaml(docs) if format == "yaml" else to_csv(docs)


def _checked(docs: list[dict[str, Any]], budget: Budget) -> Iterator[dict[str, Any]]:
    for index, doc in enumerate(docs):
        if index % CHECK_EVERY == 0:
            budget.check()
        yield doc


def documents(stack: Stack) -> list[dict[str, Any]]:
    """Every tool as a catalogue document, with its active contracts and outgoing integrations."""
    names = {t.id: t.name for t in stack.tools}
    contracts: dict[str, list[Any]] = defaultdict(list)
    for c in stack.contracts:
        contracts[c.tool_id].append(c)
    edges: dict[str, list[Any]] = defaultdict(list)
    for e in stack.integrations:
        edges[e.from_tool_id].append(e)
    return [_document(t, contracts[t.id], edges[t.id], names) for t in stack.tools]


def _document(t: Any, contracts: list[Any], edges: list[Any], names: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "vendor": t.vendor,
        "category": t.category,
        "capabilities": list(t.capabilities),
        "owner": {"team": t.owner_team, "person": t.owner_person},
        "business_owner": t.business_owner,
        "lifecycle": t.lifecycle,
        "time_class": t.time_class,
        "personal_data": t.personal_data,
        "sso": t.sso,
        "url": t.url,
        "notes": t.notes,
        "layer": t.layer,
        "contracts": [
            {
                "start": c.start.isoformat(),
                "end": c.end.isoformat(),
                "billing_period": c.billing_period,
                "cost": fmt(c.cost_minor, c.currency),
                "currency": c.currency,
                "seats": c.seats,
                "auto_renew": c.auto_renew,
                "notice_days": c.notice_days,
                "budget_line_code": c.budget_line_code,
                "external_ref": c.external_ref,
            }
            for c in contracts
        ],
        "integrations": [
            {
                "to": names[e.to_tool_id],
                "data_objects": list(e.data_objects),
                "direction": e.direction,
                "method": e.method,
                "owner": e.owner,
                "status": e.status,
                "notes": e.notes,
            }
            for e in edges
        ],
    }
    return {"apiVersion": "pitcrew.dev/v1", "kind": "Tool", "metadata": {"name": t.name}, "spec": spec}


def to_yaml(docs: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> str:
    text: str = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, explicit_start=True)
    return text


def to_csv(docs: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for d in docs:
        spec = d["spec"]
        writer.writerow(
            {
                "name": d["metadata"]["name"],
                "vendor": spec["vendor"],
                "category": spec["category"],
                "capabilities": ";".join(spec["capabilities"]),
                "owner_team": spec["owner"]["team"] or "",
                "owner_person": spec["owner"]["person"] or "",
                "business_owner": spec["business_owner"] or "",
                "lifecycle": spec["lifecycle"],
                "time_class": spec["time_class"] or "",
                "personal_data": str(spec["personal_data"]).lower(),
                "sso": str(spec["sso"]).lower(),
                "url": spec["url"] or "",
                "notes": spec["notes"] or "",
                "layer": spec["layer"] or "",
            }
        )
    return out.getvalue()
