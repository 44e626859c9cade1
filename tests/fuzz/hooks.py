"""Schemathesis hooks for `make fuzz` (loaded through SCHEMATHESIS_HOOKS).

Pitcrew's YAML answers (the registry's catalogue export) are YAML *streams*, one document per tool,
and are documented as text (`type: string`): the body must be well-formed YAML, and its schema is that
of the text. Schemathesis reads YAML as a single document, which a stream is not, so here a YAML
answer is parsed whole (a malformed one fails the check) and handed to the schema check as its text.
"""

from __future__ import annotations

from typing import Any

import schemathesis
import yaml

YAML_MEDIA_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


@schemathesis.deserializer(*YAML_MEDIA_TYPES)
def yaml_stream(_ctx: Any, response: Any) -> str:
    text: str = response.content.decode(response.encoding or "utf-8")
    for _ in yaml.safe_load_all(text):  # raises on a malformed stream
        pass
    return text
