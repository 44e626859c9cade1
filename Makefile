# Pitcrew: everything a fresh machine with Python 3.11+ and make needs.
# uv is brought in locally (.tools/), never installed globally.

PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=
export UV_PROJECT_ENVIRONMENT := $(VENV)
PITCREW_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export PITCREW_TEST_POSTGRES_URL

.PHONY: help up venv test test-postgres test-chaos test-browser fuzz bench lint fmt clean

help:
	@echo "make up             start NATS, migrate, start the five services and the gateway (Ctrl-C stops)"
	@echo "make test           the whole suite on SQLite and a NATS server the tests start"
	@echo "make test-postgres  the database-facing suite on PostgreSQL (PITCREW_TEST_POSTGRES_URL)"
	@echo "make test-chaos     NATS, services and database connections killed mid-stream (PostgreSQL)"
	@echo "make test-browser   the web console in Chromium (Playwright, axe-core); screenshots in var/screenshots"
	@echo "make fuzz           schemathesis through the gateway of a running stack (seeded, time-bounded)"
	@echo "make bench          the benchmarks in bench/ (figures and ratios)"
	@echo "make lint           ruff, ruff format, mypy, compose file, Kubernetes manifests, Dockerfile"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

venv: $(VENV)/.synced

up: venv
	$(VENV)/bin/pitcrew up $(ARGS)

test: venv
	$(PY) -m pytest -m "not postgres_only and not chaos and not browser" $(PYTEST_ARGS)

test-postgres: venv
	PITCREW_TEST_BACKEND=postgres $(PY) -m pytest -m "not chaos and not browser" $(PYTEST_ARGS)

test-chaos: venv
	PITCREW_TEST_BACKEND=postgres $(PY) -m pytest -m chaos tests/chaos $(PYTEST_ARGS)

# Playwright drives Debian's chromium (Playwright's own browser download is not reachable here).
CHROMIUM ?= /usr/bin/chromium
test-browser: venv
	@if [ ! -x "$(CHROMIUM)" ]; then \
		echo "installing chromium (apt-get)"; \
		{ apt-get install -y chromium || { apt-get update && apt-get install -y chromium; }; } \
		|| { echo "chromium is missing and could not be installed"; exit 1; }; \
	fi
	PITCREW_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -m browser tests/browser $(PYTEST_ARGS)

fuzz: venv
	$(PY) tests/fuzz/run_fuzz.py $(FUZZ_ARGS)

bench: venv
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: venv
	$(VENV)/bin/ruff check shared gateway services pitcrew console tests bench deploy
	$(VENV)/bin/ruff format --check shared gateway services pitcrew console tests bench deploy
	$(VENV)/bin/mypy shared gateway services pitcrew console
	@if [ -x deploy/lint.sh ]; then deploy/lint.sh; fi

fmt: venv
	$(VENV)/bin/ruff check --fix shared gateway services pitcrew console tests bench deploy
	$(VENV)/bin/ruff format shared gateway services pitcrew console tests bench deploy

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache
