#!/usr/bin/env python3
"""Offline checks of the deployment files; `deploy/lint.sh` (so `make lint`) runs them.

    check_deploy.py compose   docker-compose.yml, interpolated with .env.example as `docker compose
                              config` does, against deploy/compose-schema.json, plus Pitcrew's rules
                              (a migration before every app, one database per app, only the gateway
                              published, every variable documented in .env.example)
    check_deploy.py k8s       builds each kustomization in deploy/k8s (with `kubectl kustomize` when
                              it is installed, and always with the small renderer below, and checks
                              both agree), validates every manifest against the Kubernetes schemas
                              that kubernetes-validate ships, checks Pitcrew's rules (replicas,
                              probes, resources, PDB, HPA, migration Jobs, NATS cluster routes) and
                              tests the NATS configuration with `nats-server -t`
    check_deploy.py render DIR  prints the rendered kustomization (handy without kubectl)

No network, no Docker engine, no cluster: everything comes with `make venv`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pitcrew.topology import APPS  # noqa: E402 - the apps and their ports, from the one table

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = [K8S / "base", K8S / "overlays" / "production"]
SECRETS_EXAMPLE = K8S / "examples" / "secrets.example.yaml"
# The oldest Kubernetes we promise (HPA autoscaling/v2, PDB policy/v1 are GA there) and the newest known.
K8S_VERSIONS = ["1.29.0", kv.latest_version()]
# kubernetes-validate re-reads its (large) definitions file for every resource; read each once.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

Problems = list[str]


# ---------------------------------------------------------------- compose


def parse_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments; single-quoted values literal, double-quoted ones unescaped."""
    env: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise ValueError(f"{path.name}:{number}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        elif len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].encode().decode("unicode_escape")
        env[key.strip()] = value
    return env


_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def interpolate(value: Any, env: dict[str, str], used: set[str], problems: Problems, where: str = "") -> Any:
    """Compose's variable substitution ($$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR:+r})."""
    if isinstance(value, dict):
        return {k: interpolate(v, env, used, problems, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, used, problems, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match[str]) -> str:
        if m["escaped"]:
            return "$"
        if m["invalid"] is not None:
            problems.append(f"compose: {where}: invalid interpolation in {value!r}")
            return ""
        name = m["braced"] or m["named"]
        used.add(name)
        op, arg = m["op"], m["arg"] or ""
        is_set = name in env
        non_empty = bool(env.get(name))
        present = non_empty if op and op.startswith(":") else is_set
        if op in ("-", ":-"):
            return env[name] if present else arg
        if op in ("?", ":?"):
            if not present:
                problems.append(f"compose: {where}: required variable {name} is missing ({arg})")
            return env.get(name, "")
        if op in ("+", ":+"):
            return arg if present else ""
        if not is_set:
            problems.append(f"compose: {where}: variable {name} is not set and has no default")
        return env.get(name, "")

    return _VAR.sub(substitute, value)


def env_dict(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def check_compose(problems: Problems) -> None:
    compose_path = ROOT / "docker-compose.yml"
    env_example = parse_dotenv(ROOT / ".env.example")
    raw = yaml.safe_load(compose_path.read_text(encoding="utf-8"))
    used: set[str] = set()
    doc = interpolate(raw, env_example, used, problems)

    schema = json.loads((DEPLOY / "compose-schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = ".".join(map(str, error.absolute_path)) or "(top level)"
        problems.append(f"compose: {path}: {error.message}")
    if problems:
        return

    services: dict[str, dict[str, Any]] = doc["services"]
    volumes = set((doc.get("volumes") or {}).keys())
    for name, svc in services.items():
        for dep in depends(svc):
            if dep not in services:
                problems.append(f"compose: {name} depends on {dep}, which is not a service")
            if dep == name:
                problems.append(f"compose: {name} depends on itself")
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith((".", "/")):
                if source.startswith(".") and not (ROOT / source).exists():
                    problems.append(f"compose: {name} mounts {source}, which does not exist")
            elif source and source not in volumes:
                problems.append(f"compose: {name} uses volume {source}, not declared under volumes:")
        build = svc.get("build")
        if isinstance(build, dict):
            context = ROOT / build.get("context", ".")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"compose: {name}: no Dockerfile at {build.get('dockerfile')} in {context}")
        if "ports" in svc and name != "gateway":
            problems.append(f"compose: {name} publishes ports; only the gateway is reachable from outside")
    _check_cycles(services, problems)

    for app, info in APPS.items():
        db_var = f"PITCREW_{app.upper()}_DATABASE_URL"
        migrate = f"{app}-migrate"
        svc, mig = services.get(app), services.get(migrate)
        if svc is None or mig is None:
            problems.append(f"compose: services {app} and {migrate} are both required")
            continue
        if svc.get("command") != [app]:
            problems.append(f"compose: {app}: command should be [{app!r}] (the image's entrypoint picks the app)")
        if mig.get("command") != ["migrate", app]:
            problems.append(f"compose: {migrate}: command should be ['migrate', {app!r}]")
        if depends(svc).get(migrate) != "service_completed_successfully":
            problems.append(f"compose: {app} must wait for {migrate} (condition: service_completed_successfully)")
        if mig.get("restart", "no") != "no":
            problems.append(f"compose: {migrate} is a one-shot job: restart must be 'no'")
        for who, s in ((app, svc), (migrate, mig)):
            env = env_dict(s)
            url = env.get(db_var, "")
            if not url.startswith("postgresql://") or not url.endswith(f"@postgres:5432/{app}"):
                problems.append(f"compose: {who}: {db_var} should be postgresql://{app}:...@postgres:5432/{app}")
            elif not url.startswith(f"postgresql://{app}:"):
                problems.append(f"compose: {who}: connects as another role than {app!r}")
            others = [k for k in env if k.endswith("_DATABASE_URL") and k != db_var]
            if others:
                problems.append(f"compose: {who} gets other apps' databases: {', '.join(others)}")
            foreign = [f"PITCREW_{o.upper()}_DB_PASSWORD" for o in APPS if o != app] + ["POSTGRES_PASSWORD"]
            leaked = [v for v in foreign if env_example.get(v) and any(env_example[v] in x for x in env.values())]
            if leaked:
                problems.append(f"compose: {who} holds credentials that are not its own: {', '.join(leaked)}")
        test = (svc.get("healthcheck") or {}).get("test", [])
        if str(info.default_port) not in test:
            problems.append(f"compose: {app}: healthcheck should probe port {info.default_port}: {test}")
        env = env_dict(svc)
        if env.get("PITCREW_ENVIRONMENT") != "production":
            problems.append(f"compose: {app} should run with PITCREW_ENVIRONMENT=production")
        if not env.get("PITCREW_IDENTITY_SECRET"):
            problems.append(f"compose: {app} needs PITCREW_IDENTITY_SECRET")

    gateway_env = env_dict(services.get("gateway", {}))
    for name, info in APPS.items():
        if name != "gateway" and gateway_env.get(f"PITCREW_GATEWAY_{name.upper()}_URL") != (
            f"http://{name}:{info.default_port}"
        ):
            problems.append(
                f"compose: gateway: PITCREW_GATEWAY_{name.upper()}_URL should be http://{name}:{info.default_port}"
            )
    postgres_env = env_dict(services.get("postgres", {}))
    for app in APPS:
        if not postgres_env.get(f"PITCREW_{app.upper()}_DB_PASSWORD"):
            problems.append(f"compose: postgres: the init script needs PITCREW_{app.upper()}_DB_PASSWORD")
    init_mounted = any(
        isinstance(m, str) and m.split(":")[1] == "/docker-entrypoint-initdb.d"
        for m in services.get("postgres", {}).get("volumes", [])
    )
    if not init_mounted:
        problems.append("compose: postgres must mount deploy/postgres-init at /docker-entrypoint-initdb.d")

    undocumented = sorted(v for v in used if v not in env_example and not _has_default(raw, v))
    if undocumented:
        problems.append(f"compose: variables used but not in .env.example: {', '.join(undocumented)}")
    unused = sorted(set(env_example) - used)
    if unused:
        problems.append(f".env.example: variables docker-compose.yml never uses: {', '.join(unused)}")


def _has_default(raw: Any, name: str) -> bool:
    return re.search(r"\$\{" + re.escape(name) + r":?-", json.dumps(raw)) is not None


def _check_cycles(services: dict[str, dict[str, Any]], problems: Problems) -> None:
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == 1:
            problems.append(f"compose: dependency cycle: {' -> '.join([*trail, name])}")
            return
        if state.get(name) == 2 or name not in services:
            return
        state[name] = 1
        for dep in depends(services[name]):
            visit(dep, [*trail, name])
        state[name] = 2

    for name in services:
        visit(name, [])


# ---------------------------------------------------------------- kustomize

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "CustomResourceDefinition",
    "PriorityClass",
    "IngressClass",
}
# Strategic-merge keys of the lists a patch here may touch; any other list is replaced (as kustomize
# does for lists without a merge key), and lists whose key differs by context are refused.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "envFrom": None,
    "args": None,
    "command": None,
    "volumeClaimTemplates": None,
    "metrics": None,
    "tls": None,
    "rules": None,
}


class RenderError(Exception):
    pass


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def resource_id(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = doc.get("metadata", {})
    return doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"]


def render(kdir: Path) -> list[dict[str, Any]]:
    """A kustomize build for the features deploy/k8s uses; anything else is an error, never ignored."""
    kfile = kdir / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text(encoding="utf-8"))
    unknown = set(k) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{kfile}: fields this renderer does not support: {sorted(unknown)}")
    docs: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        path = (kdir / entry).resolve()
        docs.extend(render(path) if path.is_dir() else load_docs(path))
    seen: set[tuple[str, str, str, str]] = set()
    for doc in docs:
        if resource_id(doc) in seen:
            raise RenderError(f"{kfile}: duplicate resource {resource_id(doc)}")
        seen.add(resource_id(doc))
    for patch in k.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{kfile}: only `patches: - path: FILE` (strategic merge) is supported: {patch}")
        for p in load_docs(kdir / patch["path"]):
            targets = [
                d
                for d in docs
                if d["kind"] == p["kind"]
                and d["metadata"]["name"] == p["metadata"]["name"]
                and d["apiVersion"] == p["apiVersion"]
            ]
            if len(targets) != 1:
                raise RenderError(
                    f"{kfile}: patch {patch['path']} {p['kind']}/{p['metadata']['name']} "
                    f"matches {len(targets)} resources"
                )
            strategic_merge(targets[0], p, f"{patch['path']}:{p['kind']}/{p['metadata']['name']}")
    if "namespace" in k:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = k["namespace"]
    for entry in k.get("labels", []):
        if (
            entry.get("includeSelectors")
            or entry.get("includeTemplates")
            or set(entry) - {"pairs", "includeSelectors", "includeTemplates"}
        ):
            raise RenderError(f"{kfile}: only labels with includeSelectors/includeTemplates false are supported")
        for doc in docs:
            doc["metadata"].setdefault("labels", {}).update(entry["pairs"])
    for image in k.get("images", []):
        if set(image) - {"name", "newName", "newTag", "digest"}:
            raise RenderError(f"{kfile}: unsupported image fields in {image}")
        for doc in docs:
            for container in containers_of(doc):
                container["image"] = retag(container["image"], image)
    return docs


def strategic_merge(base: dict[str, Any], patch: dict[str, Any], where: str) -> None:
    for key, value in patch.items():
        if key.startswith("$"):
            raise RenderError(f"{where}: directive {key} is not supported")
        current = base.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            strategic_merge(current, value, where)
        elif isinstance(value, list) and isinstance(current, list):
            if key not in MERGE_KEYS:
                raise RenderError(f"{where}: patching the list {key!r} is not supported here")
            merge_key = MERGE_KEYS[key]
            if merge_key is None:
                base[key] = copy.deepcopy(value)
                continue
            by_key = {item[merge_key]: item for item in current}
            for item in value:
                if item[merge_key] in by_key:
                    strategic_merge(by_key[item[merge_key]], item, where)
                else:
                    current.insert(0, copy.deepcopy(item))  # kustomize puts new items first
        else:
            base[key] = copy.deepcopy(value)


def containers_of(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict) and "image" in c)
            else:
                yield from containers_of(value)
    elif isinstance(node, list):
        for item in node:
            yield from containers_of(item)


def retag(image: str, rule: dict[str, str]) -> str:
    name, digest = image.split("@", 1) if "@" in image else (image, "")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != rule["name"]:
        return image
    name = rule.get("newName", name)
    if "digest" in rule:
        return f"{name}@{rule['digest']}"
    if "newTag" in rule:
        return f"{name}:{rule['newTag']}"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def kubectl_render(kdir: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
    out = subprocess.run([kubectl, "kustomize", str(kdir)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RenderError(f"kubectl kustomize {kdir.relative_to(ROOT)}: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# ---------------------------------------------------------------- Kubernetes checks


def validate_schema(docs: list[dict[str, Any]], label: str, problems: Problems) -> None:
    for doc in docs:
        for version in K8S_VERSIONS:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(map(str, e.path))
                problems.append(
                    f"{label}: {doc['kind']}/{doc['metadata']['name']} (k8s {version}): {path}: {e.message}"
                )
            except kv.SchemaNotFoundError as e:
                problems.append(f"{label}: {e.message}")


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, d["spec"]["template"]) for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_manifests(docs: list[dict[str, Any]], label: str, problems: Problems, *, overlay: bool) -> None:
    def find(kind: str, name: str) -> dict[str, Any] | None:
        return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name), None)

    def fail(msg: str) -> None:
        problems.append(f"{label}: {msg}")

    templates = pod_templates(docs)
    example_secrets = {d["metadata"]["name"] for d in load_docs(SECRETS_EXAMPLE) if d["kind"] == "Secret"}
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for owner, tmpl in templates:
        spec = tmpl["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{owner['kind']}/{owner['metadata']['name']} container {c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for what in ("cpu", "memory"):
                    if what not in res.get(part, {}):
                        fail(f"{where}: no resources.{part}.{what}")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False or sc.get("readOnlyRootFilesystem") is not True:
                fail(f"{where}: must not escalate privileges and must have a read-only root file system")
            for ref in c.get("envFrom", []):
                if "secretRef" in ref and ref["secretRef"]["name"] not in example_secrets:
                    fail(f"{where}: Secret {ref['secretRef']['name']} is not described in {SECRETS_EXAMPLE.name}")
                if "configMapRef" in ref and ref["configMapRef"]["name"] not in config_maps:
                    fail(f"{where}: ConfigMap {ref['configMapRef']['name']} is not in the build")
        if spec.get("securityContext", {}).get("runAsNonRoot") is not True:
            fail(f"{owner['kind']}/{owner['metadata']['name']}: pods must run as non-root")

    for d in docs:
        if d["kind"] == "Secret" and overlay:
            fail(f"Secret/{d['metadata']['name']} must not be part of an overlay (secrets come from outside)")
        if d["kind"] in ("Service", "PodDisruptionBudget"):
            sel = d["spec"]["selector"]
            sel = sel.get("matchLabels", {}) if d["kind"] == "PodDisruptionBudget" else sel
            if sel and not any(selects(sel, t["metadata"]["labels"]) for _, t in templates):
                fail(f"{d['kind']}/{d['metadata']['name']}: selector {sel} matches no pod template")
        if overlay and d["kind"] not in CLUSTER_SCOPED and not d["metadata"].get("namespace"):
            fail(f"{d['kind']}/{d['metadata']['name']}: no namespace")

    for app, info in APPS.items():
        dep = find("Deployment", app)
        if dep is None:
            fail(f"Deployment/{app} is missing")
            continue
        if dep["spec"].get("replicas", 1) < 2:
            fail(f"Deployment/{app}: at least 2 replicas")
        pod = dep["spec"]["template"]
        main = next((c for c in pod["spec"]["containers"] if c["name"] == app), None)
        if main is None:
            fail(f"Deployment/{app}: no container named {app}")
            continue
        if main.get("args") != [app]:
            fail(f"Deployment/{app}: container args should be [{app!r}]")
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            refs = {r["secretRef"]["name"] for r in c.get("envFrom", []) if "secretRef" in r}
            refs |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
            if refs - {"pitcrew-identity", f"pitcrew-{app}"}:
                fail(f"Deployment/{app} container {c['name']}: reads other apps' Secrets {sorted(refs)}")
        ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}
        if ports.get("http") != info.default_port:
            fail(f"Deployment/{app}: port http should be {info.default_port}")
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
            got = main.get(probe, {}).get("httpGet", {}).get("path")
            if got != path:
                fail(f"Deployment/{app}: {probe} should GET {path}, not {got}")
        labels = pod["metadata"]["labels"]
        if not any(
            d["kind"] == "PodDisruptionBudget" and selects(d["spec"]["selector"].get("matchLabels", {}), labels)
            for d in docs
        ):
            fail(f"Deployment/{app}: no PodDisruptionBudget")
        hpa = next(
            (
                d
                for d in docs
                if d["kind"] == "HorizontalPodAutoscaler"
                and d["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": app}
            ),
            None,
        )
        if hpa is None:
            fail(f"Deployment/{app}: no HorizontalPodAutoscaler")
        elif not 2 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]:
            fail(f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: need 2 <= minReplicas <= maxReplicas")
        elif hpa["spec"]["minReplicas"] != dep["spec"]["replicas"]:
            fail(f"Deployment/{app}: replicas {dep['spec']['replicas']} differ from the HPA's minReplicas")
        svc = find("Service", app)
        if svc is None or not selects(svc["spec"]["selector"], labels):
            fail(f"Service/{app}: missing or not selecting the {app} pods")
        elif [p["port"] for p in svc["spec"]["ports"]] != [info.default_port]:
            fail(f"Service/{app}: should expose port {info.default_port}")
        job = find("Job", f"migrate-{app}")
        if job is None:
            fail(f"Job/migrate-{app} is missing")
        else:
            c = job["spec"]["template"]["spec"]["containers"][0]
            if c.get("args") != ["migrate", app]:
                fail(f"Job/migrate-{app}: args should be ['migrate', {app!r}]")
            refs = {r["secretRef"]["name"] for r in c.get("envFrom", []) if "secretRef" in r}
            if refs != {f"pitcrew-{app}"}:
                fail(f"Job/migrate-{app}: should read exactly Secret pitcrew-{app}, reads {sorted(refs)}")
            if c.get("image") != main.get("image"):
                fail(f"Job/migrate-{app}: image {c.get('image')} differs from the app's {main.get('image')}")

    sts = find("StatefulSet", "nats")
    if sts is None:
        fail("StatefulSet/nats is missing")
        return
    if sts["spec"]["replicas"] != 3:
        fail("StatefulSet/nats: a JetStream cluster of 3")
    headless = find("Service", sts["spec"]["serviceName"])
    if headless is None or headless["spec"].get("clusterIP") != "None":
        fail(f"StatefulSet/nats: serviceName {sts['spec']['serviceName']} must be a headless Service")
    if not sts["spec"].get("volumeClaimTemplates"):
        fail("StatefulSet/nats: JetStream needs persistent volumes (volumeClaimTemplates)")
    conf = (find("ConfigMap", "nats-config") or {}).get("data", {}).get("nats.conf", "")
    for i in range(3):
        route = f"nats://nats-{i}.{sts['spec']['serviceName']}:6222"
        if route not in conf:
            fail(f"nats.conf: cluster routes should include {route}")
    if "jetstream" not in conf:
        fail("nats.conf: JetStream is not enabled")
    check_nats_conf(conf, label, problems)


def check_nats_conf(conf: str, label: str, problems: Problems) -> None:
    """`nats-server -t`: the server's own parser, with the pod name the StatefulSet provides."""
    binary = Path(sys.executable).parent / "nats-server"
    if not binary.exists():
        problems.append(f"{label}: nats-server not found next to {sys.executable} (run `make venv`)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "nats.conf"
        path.write_text(conf, encoding="utf-8")
        out = subprocess.run(
            [str(binary), "-c", str(path), "-t"],
            capture_output=True,
            text=True,
            timeout=30,
            env={"SERVER_NAME": "nats-0", "PATH": "/usr/bin:/bin"},
        )
        if out.returncode != 0:
            problems.append(f"{label}: nats.conf rejected by nats-server: {(out.stderr or out.stdout).strip()}")


def normalized(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    return {resource_id(d): d for d in docs}


def check_k8s(problems: Problems, echo: Callable[[str], None]) -> None:
    for kdir in KUSTOMIZATIONS:
        label = str(kdir.relative_to(ROOT))
        try:
            mine = render(kdir)
            theirs = kubectl_render(kdir)
        except (RenderError, OSError, yaml.YAMLError) as exc:
            problems.append(f"{label}: {exc}")
            continue
        if theirs is None:
            echo(f"{label}: {len(mine)} resources (kubectl not installed: rendered by check_deploy.py only)")
        else:
            a, b = normalized(mine), normalized(theirs)
            if a != b:
                differ = sorted(set(a) ^ set(b)) + sorted(k for k in set(a) & set(b) if a[k] != b[k])
                problems.append(f"{label}: check_deploy.py's rendering differs from kubectl kustomize's: {differ}")
            else:
                echo(f"{label}: {len(mine)} resources (kubectl kustomize and check_deploy.py agree)")
        validate_schema(mine, label, problems)
        check_manifests(mine, label, problems, overlay=kdir.parent.name == "overlays")
    validate_schema(load_docs(SECRETS_EXAMPLE), str(SECRETS_EXAMPLE.relative_to(ROOT)), problems)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("compose", "k8s", "render"):
        print(__doc__, file=sys.stderr)
        return 64
    problems: Problems = []
    if argv[1] == "render":
        target = Path(argv[2]) if len(argv) > 2 else KUSTOMIZATIONS[-1]
        print(yaml.safe_dump_all(render(target.resolve()), sort_keys=False), end="")
        return 0
    if argv[1] == "compose":
        check_compose(problems)
        what = "docker-compose.yml (with .env.example)"
    else:
        check_k8s(problems, print)
        what = f"Kubernetes manifests (strict schemas, Kubernetes {' and '.join(K8S_VERSIONS)})"
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    print(f"{what}: {'FAILED, ' + str(len(problems)) + ' problem(s)' if problems else 'ok'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
