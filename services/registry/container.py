"""The registry's domain objects, built once per process from its settings (`ServiceSpec.build`).

Routes reach them through the `domain` dependency, the timer handler through `runtime.domain`.
The tool catalogue, its history and integrations need no configuration: they are plain functions
of `tools`, `history` and `integrations`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from services.registry import graph
from services.registry.contracts import Contracts
from services.registry.costs import StackCosts
from services.registry.export import ExportLimits
from services.registry.milestones import MilestonePlan
from services.registry.renewals import RenewalClock
from services.registry.reviews import Reviews
from services.registry.settings import Settings
from services.registry.utilization import Usage
from shared.app import Runtime


@dataclass(frozen=True)
class Registry:
    clock: RenewalClock
    milestones: MilestonePlan
    contracts: Contracts
    reviews: Reviews
    usage: Usage
    costs: StackCosts
    graph_limits: graph.Limits
    export_limits: ExportLimits
    rightsizing_headroom: float


def build(runtime: Runtime) -> Registry:
    settings = runtime.settings
    assert isinstance(settings, Settings)
    clock = RenewalClock(runtime.infra.timers, settings.renewal_lead_days, settings.renewal_fire_time)
    milestones = MilestonePlan(
        runtime.infra.timers, tuple(settings.renewal_milestones), settings.renewal_lead_days, settings.renewal_fire_time
    )
    contracts = Contracts(clock, milestones)
    return Registry(
        clock=clock,
        milestones=milestones,
        contracts=contracts,
        reviews=Reviews(contracts, clock, milestones),
        usage=Usage(settings.utilization_window_days, settings.underused_below),
        costs=StackCosts(settings.base_currency),
        graph_limits=graph.Limits(settings.graph_max_tools, settings.graph_max_integrations, settings.analysis_seconds),
        export_limits=ExportLimits(settings.export_max_tools, settings.export_seconds),
        rightsizing_headroom=settings.rightsizing_headroom,
    )


async def domain(request: Request) -> Registry:
    """FastAPI dependency: the registry's domain objects (async and request-only, as the fast lane needs)."""
    registry: Registry = request.app.state.runtime.domain
    return registry
