"""docs/events.md, generated from the services' event catalogues and one template.

The events come from each service's `services/<svc>/events.py` `CATALOGUE`, imported in
process, through the same AsyncAPI document the gateway serves (shared.asyncapi) and the
same per-channel view as its `/asyncapi` page (gateway.asyncapi.channels); the ERP/CRM
webhook contract is text in the template. `pitcrew events-doc` writes the file, and a
test checks that the file is what this renders, so the page cannot drift from the code.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import jinja2

from gateway.asyncapi import channels, shapes
from pitcrew.topology import ROOT, SERVICES
from shared import asyncapi
from shared.contracts import Catalogue

OUTPUT = ROOT / "docs" / "events.md"
TEMPLATE = "events.md.j2"


def catalogues() -> list[Catalogue]:
    """The catalogue of every service that has one (a service without events.CATALOGUE has none yet)."""
    found = []
    for name in SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.events")
        except ModuleNotFoundError as exc:
            if exc.name not in (f"services.{name}", f"services.{name}.events"):
                raise  # the module exists but something it imports does not: a real error
            continue
        catalogue = getattr(module, "CATALOGUE", None)
        if isinstance(catalogue, Catalogue):
            found.append(catalogue)
    return found


def _cell(value: Any) -> str:
    """Text for one cell of a Markdown table."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(found: list[Catalogue] | None = None) -> str:
    found = catalogues() if found is None else found
    doc = asyncapi.document(found)
    receive = [op for op in doc["operations"].values() if op["action"] == "receive"]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=False,  # Markdown, not HTML  # noqa: S701
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["cell"] = _cell
    return env.get_template(TEMPLATE).render(
        envelope=asyncapi.ENVELOPE_FIELDS,
        services=[c.service for c in found],
        channels=channels(doc),
        shapes=shapes(doc),
        consumed={c.service: c.consumes for c in found},
        receive=receive,
    )
