"""The request types the service ships, each with the definition its requests start: a campaign
brief, a creative request, an event request and a supplier job. Data, not code: each form is a
JSON Schema a published type would carry; admins and mops publish new versions or types of their
own over the API. Every form asks for the region, which scopes the request like an instance.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CALENDAR = "default"  # definitions.DEFAULT_CALENDAR, spelled out: this module is data

_REGION = {"type": "string", "minLength": 1, "maxLength": 100, "description": "scopes who sees and decides"}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 4000}
_NAME = {"type": "string", "minLength": 1, "maxLength": 200}
_DATE = {"type": "string", "format": "date", "description": "YYYY-MM-DD"}
_MONEY = {"type": "string", "pattern": r"^\d{1,12}(\.\d{1,2})?$", "description": "a decimal amount, e.g. 2500.00"}
_CURRENCY = {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217, e.g. EUR"}
_URL = {"type": "string", "format": "uri", "maxLength": 2000}


def _form(title: str, required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


def _stage(name: str, role: str, hours: str, escalation: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "assignees": {"roles": [role], "users": [], "scope_from_context": ["region"]},
        "mode": "any",
        "sla": {"business_hours": hours, "calendar": DEFAULT_CALENDAR, "warn_at": "0.75"},
        "escalation": escalation,
        **extra,
    }


REQUEST_DEFINITIONS: list[dict[str, Any]] = [
    {
        "key": "campaign-brief-review",
        "name": "Campaign brief review",
        "description": "Shipped with the campaign-brief request type: marketing ops of the region takes the brief.",
        "stages": [_stage("Brief review", "mops", "16", {"reassign_to_role": "admin"})],
    },
    {
        "key": "creative-request-review",
        "name": "Creative request intake",
        "description": "Shipped with the creative-request request type: marketing ops accepts the job.",
        "stages": [_stage("Creative intake", "mops", "8", {"notify": ["mops", "admin"]})],
    },
    {
        "key": "event-request-approval",
        "name": "Event request approval",
        "description": "Shipped with the event-request request type: the region's approver, then marketing ops.",
        "stages": [
            _stage("Regional approval", "approver", "16", {"reassign_to_role": "mops"}),
            _stage("Event ops review", "mops", "8", {"notify": ["mops", "admin"]}),
        ],
    },
    {
        "key": "supplier-job-approval",
        "name": "Supplier job approval",
        "description": "Shipped with the supplier-job request type: the budget holder, then finance above 5000.",
        "stages": [
            _stage("Budget holder approval", "approver", "16", {"reassign_to_role": "mops"}),
            _stage(
                "Finance review",
                "finance",
                "16",
                {"notify": ["finance", "admin"]},
                auto_approve=[{"field": "estimated_cost", "op": "lt", "value": "5000"}],
            ),
        ],
    },
]

REQUEST_TYPES: list[dict[str, Any]] = [
    {
        "key": "campaign-brief",
        "name": "Campaign brief",
        "description": "Brief marketing ops on a campaign: objective, audience, channels, dates and budget.",
        "definition_key": "campaign-brief-review",
        "form": _form(
            "Campaign brief",
            ["region", "objective", "audience", "launch_date", "budget", "currency"],
            {
                "region": _REGION,
                "objective": _TEXT,
                "audience": _TEXT,
                "channels": {
                    "type": "array",
                    "uniqueItems": True,
                    "maxItems": 20,
                    "items": {
                        "enum": ["email", "paid_social", "search", "display", "events", "content", "tv", "radio", "ooh"]
                    },
                },
                "launch_date": _DATE,
                "end_date": _DATE,
                "budget": _MONEY,
                "currency": _CURRENCY,
                "kpis": {"type": "array", "maxItems": 20, "items": _NAME},
            },
        ),
    },
    {
        "key": "creative-request",
        "name": "Creative request",
        "description": "Ask the creative team (or an agency) for an asset.",
        "definition_key": "creative-request-review",
        "form": _form(
            "Creative request",
            ["region", "asset_type", "description", "due_date"],
            {
                "region": _REGION,
                "asset_type": {
                    "enum": ["banner", "video", "social_post", "print", "landing_page", "email_template", "other"]
                },
                "description": _TEXT,
                "sizes": {"type": "array", "maxItems": 50, "items": _NAME},
                "brand_guidelines_url": _URL,
                "due_date": _DATE,
            },
        ),
    },
    {
        "key": "event-request",
        "name": "Event request",
        "description": "Propose an event: when, where, how many and what it costs.",
        "definition_key": "event-request-approval",
        "form": _form(
            "Event request",
            ["region", "event_name", "event_date", "format", "expected_attendees", "budget", "currency"],
            {
                "region": _REGION,
                "event_name": _NAME,
                "event_date": _DATE,
                "format": {"enum": ["in_person", "virtual", "hybrid"]},
                "location": _NAME,
                "expected_attendees": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "budget": _MONEY,
                "currency": _CURRENCY,
            },
        ),
    },
    {
        "key": "supplier-job",
        "name": "Supplier job",
        "description": "Commission work from a supplier: scope, cost and delivery date.",
        "definition_key": "supplier-job-approval",
        "form": _form(
            "Supplier job",
            ["region", "supplier", "scope_of_work", "estimated_cost", "currency", "due_date"],
            {
                "region": _REGION,
                "supplier": _NAME,
                "scope_of_work": _TEXT,
                "estimated_cost": _MONEY,
                "currency": _CURRENCY,
                "due_date": _DATE,
                "po_number": _NAME,
            },
        ),
    },
]
