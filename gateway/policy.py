"""The access policy: roles -> allowed service, methods and path patterns; deny by default.

Loaded once at start from YAML (see gateway/policy.yaml for the format) and
compiled to regular expressions, so a decision is a few dictionary lookups and
regex matches; decisions are then remembered per (roles, service, method, path),
so a request seen before costs one lookup. The policy never changes while the
gateway runs, so a remembered decision is the decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from gateway.settings import SERVICE_NAMES
from shared.identity import ROLES

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALL_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})


class PolicyError(ValueError):
    """The policy file is malformed or unsafe; the gateway refuses to start with it."""


@dataclass(frozen=True)
class Rule:
    services: frozenset[str]
    methods: frozenset[str]
    pattern: re.Pattern[str]
    source: str  # the original patterns, for messages


def compile_pattern(pattern: str) -> str:
    """`*` is one path segment, `**` any number of segments (zero included)."""
    if not pattern.startswith("/"):
        raise PolicyError(f"path pattern {pattern!r} must start with '/'")
    out = []
    for seg in pattern.strip("/").split("/"):
        if seg == "**":
            out.append("(?:/[^/]+)*")
        elif seg == "":
            continue
        else:
            parts = [re.escape(p) for p in seg.split("*")]
            out.append("/" + "[^/]+".join(parts) if len(parts) > 1 else "/" + parts[0])
    return "".join(out) + "/?"


_DECISIONS_MAX = 20_000


class Policy:
    def __init__(
        self,
        rules: dict[str, list[Rule]],
        public: list[Rule] | None = None,
        read_posts: list[Rule] | None = None,
        confined: dict[str, str] | None = None,
        restricted: list[tuple[Rule, frozenset[str]]] | None = None,
    ):
        self.rules = rules
        # Paths a service keeps to a few roles (e.g. KPI's data-quality report): reached only through
        # the roles named with them (admin always), whatever broader rule (`kpi read /**`) another holds.
        self.restricted = restricted or []
        # Confined roles (role -> the scope dimension it needs, e.g. supplier -> `supplier:<id>`): a
        # principal holding one is judged by that role's rules alone, whatever else it holds, and is
        # refused without a scope on the dimension.
        self.confined = confined or {}
        # Paths anyone may reach without a credential (the signed links in notify's e-mails).
        self.public = public or []
        # POSTs that only read (a query whose body is too rich for a URL): decided as a GET of the path.
        self.read_posts = read_posts or []
        self._decisions: dict[tuple[frozenset[str], str, str, str], bool] = {}

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read policy {path}: {exc}") from exc
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: object) -> Policy:
        if not isinstance(doc, dict) or not isinstance(doc.get("roles"), dict):
            raise PolicyError("the policy must be a mapping with a 'roles' mapping")
        rules: dict[str, list[Rule]] = {}
        confined: dict[str, str] = {}
        for role, spec in doc["roles"].items():
            if role not in ROLES:
                raise PolicyError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
            read_only = role == "analyst"
            if isinstance(spec, dict):
                read_only = read_only or bool(spec.get("read_only"))
                if spec.get("scope") is not None:
                    if not isinstance(spec["scope"], str) or not spec["scope"].isidentifier():
                        raise PolicyError(f"role {role!r}: scope must name a dimension, e.g. supplier")
                    confined[role] = spec["scope"]
                spec = spec.get("rules", [])
            if not isinstance(spec, list):
                raise PolicyError(f"role {role!r}: expected a list of rules")
            compiled = [_rule(role, i, r) for i, r in enumerate(spec)]
            if read_only:
                for rule in compiled:
                    if rule.methods - READ_METHODS:
                        raise PolicyError(
                            f"role {role!r} is read-only but a rule allows "
                            f"{', '.join(sorted(rule.methods - READ_METHODS))}"
                        )
            rules[role] = compiled
        public = [_rule("public", i, r) for i, r in enumerate(doc.get("public") or [])]
        for rule in public:
            if "gateway" in rule.services:
                raise PolicyError("public paths are for the services' own signed links, not the gateway's API")
        read_posts = [
            _rule("read_posts", i, {**r, "methods": ["POST"]}) if isinstance(r, dict) else _rule("read_posts", i, r)
            for i, r in enumerate(doc.get("read_posts") or [])
        ]
        restricted = []
        for i, raw in enumerate(doc.get("restricted") or []):
            if not isinstance(raw, dict):
                raise PolicyError(f"restricted entry {i + 1}: expected a mapping with service, methods, paths, roles")
            only = raw.get("roles")
            if not isinstance(only, list) or not only or any(r not in ROLES for r in only):
                raise PolicyError(f"restricted entry {i + 1}: roles must list known roles ({', '.join(ROLES)})")
            rest = {k: v for k, v in raw.items() if k != "roles"}
            restricted.append((_rule("restricted", i, rest), frozenset(only) | {"admin"}))
        return cls(rules, public, read_posts, confined, restricted)

    def is_public(self, service: str, method: str, path: str) -> bool:
        """True when `method path` of `service` is listed under `public:` (no credential needed)."""
        return any(
            service in rule.services and method in rule.methods and rule.pattern.fullmatch(path) for rule in self.public
        )

    def unconfined(self, roles: frozenset[str], scopes: Iterable[str]) -> str | None:
        """Why a principal's scopes do not fit its confined role (e.g. a supplier without a
        `supplier:<id>` scope), or None when they do or no role of it is confined."""
        for role in sorted(roles.intersection(self.confined)):
            dim = self.confined[role]
            if not any(sc.startswith(f"{dim}:") and len(sc) > len(dim) + 1 for sc in scopes):
                return f"The {role} role needs a {dim}:<id> scope."
        return None

    def allows(self, roles: Iterable[str], service: str, method: str, path: str) -> bool:
        held = roles if isinstance(roles, frozenset) else frozenset(roles)
        confining = held.intersection(self.confined)
        key = (confining or held, service, method, path)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= _DECISIONS_MAX:
                self._decisions.clear()
            decision = self._decisions[key] = self._decide(key[0], service, method, path)
        return decision

    def _decide(self, roles: frozenset[str], service: str, method: str, path: str) -> bool:
        if method == "POST" and any(service in r.services and r.pattern.fullmatch(path) for r in self.read_posts):
            method = "GET"  # a read-only POST: whoever may read the path may send it
        for rule, only in self.restricted:
            if service in rule.services and method in rule.methods and rule.pattern.fullmatch(path):
                roles = roles & only
        for role in roles:
            for rule in self.rules.get(role, ()):
                if service in rule.services and method in rule.methods and rule.pattern.fullmatch(path):
                    return True
        return False


def _rule(role: str, index: int, raw: object) -> Rule:
    where = f"role {role!r} rule {index + 1}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: expected a mapping with service, methods, paths")
    services = raw.get("service", "*")
    services = [services] if isinstance(services, str) else services
    if services == ["*"]:
        services = [*SERVICE_NAMES, "gateway"]
    unknown = set(services) - {*SERVICE_NAMES, "gateway"}
    if unknown:
        raise PolicyError(f"{where}: unknown service(s) {', '.join(sorted(unknown))}")
    methods: set[str] = set()
    for m in raw.get("methods") or []:
        m = str(m).upper()
        if m == "*":
            methods |= ALL_METHODS
        elif m == "READ":
            methods |= READ_METHODS
        elif m in ALL_METHODS:
            methods.add(m)
        else:
            raise PolicyError(f"{where}: unknown method {m!r}")
    if not methods:
        raise PolicyError(f"{where}: no methods")
    paths = raw.get("paths") or []
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise PolicyError(f"{where}: no paths")
    regex = "|".join(f"(?:{compile_pattern(p)})" for p in paths)
    return Rule(frozenset(services), frozenset(methods), re.compile(regex), ", ".join(paths))
