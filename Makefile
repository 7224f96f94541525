# Two commands do everything on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PLACELINK_HOME ?= $(CURDIR)/.placelink

.PHONY: install demo lint test test-slow ui bench clean postgres

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/placelink demo

# The style (ruff, pyproject.toml [tool.ruff]) and the import rules (lint-imports,
# [tool.importlinter]; docs/architecture.md). Nothing to install beyond the dev extras.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# HTML reports are checked in a real browser: Debian's headless chromium.
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The deployment tests run a throwaway PostgreSQL server (tests/postgres_server.py): Debian's.
POSTGRES_BIN := $(firstword $(wildcard /usr/lib/postgresql/*/bin/pg_ctl))
postgres:
	@test -n "$(POSTGRES_BIN)" || command -v pg_ctl >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)

# Two worker processes (pytest-xdist): most tests wait on DuckDB, subprocesses and chromium, so
# two share two cores well. --dist loadfile keeps each test module whole on one worker, so its
# module fixtures (a Spark session, a run sequence) are built once; session fixtures (the small
# place, its published run) are built once per worker that needs them. xdist's loadgroup would
# group modules further, but with pytest 9 it silently groups nothing (xdist 3.8 sets a node id
# attribute pytest 9 no longer reads). `$(BIN)/python -m pytest tests/...` still runs in one process.
TEST_WORKERS ?= 2
test: $(STAMP) $(CHROMIUM) postgres
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The slow-marked tests (a 1k-people Spark run, the UI, the deployment, the profile bench, crash
# recovery at every step): about 5 minutes here; CI runs them after `make test` (.ci/run).
test-slow: $(STAMP) $(CHROMIUM) postgres
	$(BIN)/python -m pytest -m slow -n $(TEST_WORKERS) --dist loadfile

# `dg dev` (dagster-dg-cli) supersedes `dagster dev` in Dagster 1.13: it reads the project from
# pyproject.toml ([tool.dg]). VIRTUAL_ENV tells it which environment the project runs in. The
# local instance's dagster.yaml (one run at a time) is written by `placelink hub dagster-home`.
UI_PORT ?= 3000
# --no-check-yaml: the project defines its assets in Python (pipelines.orchestration.code_location)
# and has no Dagster components; dg's YAML check looks for a `pipelines/defs` components folder
# and, since dagster-dg-cli 1.13.27 at the latest, stops `dg dev` when there is none.
ui: $(STAMP)
	$(BIN)/placelink hub dagster-home >/dev/null
	VIRTUAL_ENV=$(CURDIR)/$(VENV) DAGSTER_HOME=$(PLACELINK_HOME)/dagster $(BIN)/dg dev --no-check-yaml --port $(UI_PORT)

# Benchmarks are measured, not timed tests: medians of several runs on this machine.
# `bench stages` (10k, 100k and 1M people, three runs each) takes about 20 minutes here;
# `placelink bench stages --people 100000 --repeats 1` is the quick look.
bench: $(STAMP)
	$(BIN)/placelink bench stages
	$(BIN)/placelink bench envelope
	$(BIN)/placelink bench kit
	$(BIN)/placelink bench linkage
	$(BIN)/placelink bench quality

clean:
	rm -rf $(PLACELINK_HOME)
