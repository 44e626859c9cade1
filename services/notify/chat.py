"""Slack and Microsoft Teams incoming webhooks: one JSON POST per message (text with the link)."""

from __future__ import annotations

from typing import Any

import httpx


def slack_body(title: str, facts: list[Any], link: str | None) -> dict[str, Any]:
    lines = [f"*{title}*", *(f"{a}: {b}" for a, b in facts)]
    if link:
        lines.append(f"<{link}|Open it in Pitcrew>")
    return {"text": "\n".join(lines)}


def teams_body(title: str, facts: list[Any], link: str | None) -> dict[str, Any]:
    card: dict[str, Any] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title,
        "title": title,
        "sections": [{"facts": [{"name": str(a), "value": str(b)} for a, b in facts]}],
    }
    if link:
        card["potentialAction"] = [
            {"@type": "OpenUri", "name": "Open it in Pitcrew", "targets": [{"os": "default", "uri": link}]}
        ]
    return card


async def post(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> str | None:
    """None when the webhook took it (2xx), else why not."""
    try:
        r = await client.post(url, json=body)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if r.is_success else f"HTTP {r.status_code}: {r.text[:200]}"
