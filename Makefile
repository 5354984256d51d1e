# spm-warehouse: the README's commands. Everything installs itself on first use.
#   make demo   - venv, embedded PostgreSQL, demo sources, one nightly run, summary
#   make test   - the whole test suite against a real PostgreSQL
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON   ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
UV       := $(VENV)/bin/uv
UV_VERSION := 0.13.9
STAMP    := $(VENV)/.installed
CLI      := PYTHONPATH=plugins:. $(PY) -m spm_warehouse.cli
SUPERSET := PYTHONPATH=plugins:. $(PY) -m dashboards
RUN_DATE ?=
PYTEST_ARGS ?=
# make test runs on every core (pytest-xdist), at most 4 workers; TEST_WORKERS=0 runs in one process
TEST_WORKERS ?= auto

SCALE    ?= 10000
SHAPE    ?=

.PHONY: help install demo run backfill test lint airflow stop rollback status unlock lock clean bench bench-extract faults dashboards test-dashboards install-dashboards test-deployment

help:
	@echo "make demo                      build the demo warehouse end to end (first run installs everything)"
	@echo "make test                      run the linters and the test suite against a real PostgreSQL"
	@echo "make lint                      ruff (Python) and sqlfluff (dbt SQL)"
	@echo "make test-deployment           the deployed stack: make airflow (LocalExecutor and Celery with Redis) runs a triggered night (slow)"
	@echo "make faults                    the fault-injection suite (kills, lost source, two nights, Kobo faults; docs/reliability.md)"
	@echo "make run RUN_DATE=YYYY-MM-DD   run the nightly DAG once for that as-of date (FULL_REFRESH=1 to rebuild)"
	@echo "make backfill START=.. END=..  run the nightly DAG for each as-of date of a range"
	@echo "make airflow                   Airflow UI, scheduler and workers on http://127.0.0.1:8080 (EXECUTOR=celery for Celery)"
	@echo "make rollback                  restore the previous publication of analytics"
	@echo "make status                    show what is published"
	@echo "make unlock                    give back the warehouse of a night that died (one night runs at a time)"
	@echo "make stop                      stop the embedded PostgreSQL"
	@echo "make dashboards                Superset with the management dashboards on http://127.0.0.1:8088"
	@echo "make test-dashboards           end-to-end test of the dashboards in headless Chromium (slow)"
	@echo "make bench SCALE=100000        benchmark full and nightly runs at that many clients (docs/benchmarks.md)"
	@echo "make bench SCALE=100000 DAY_LOANS=10000  ... with a simulated day that touches exactly that many loans"
	@echo "make bench-extract SCALE=100000  nightly extraction by row hash (Fineract 1.4-1.7) vs audit column"

# The virtual environment, from the committed lock file (reproducible).
$(STAMP): requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+"; exit 2; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: Python 3.11+ required")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"
	$(UV) pip sync --quiet --python $(PY) requirements.lock
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	@PYTHONPATH=plugins:. $(PY) -m tools.demo demo $(if $(SHAPE),--shape $(SHAPE))

run: $(STAMP)
	@$(CLI) run --date "$(RUN_DATE)" $(if $(FULL_REFRESH),--full-refresh) $(if $(RECONCILE),--reconcile-keys)

backfill: $(STAMP)
	@$(CLI) backfill --start "$(START)" --end "$(END)"

test: $(STAMP) lint
	PYTHONPATH=plugins:. $(PY) -m pytest --numprocesses $(TEST_WORKERS) --maxprocesses 4 --dist loadgroup $(PYTEST_ARGS)

# Python with ruff (pyproject.toml), the dbt SQL with sqlfluff (dbt_project/.sqlfluff); a finding fails.
lint: $(STAMP)
	$(VENV)/bin/ruff check plugins dags tools dashboards tests dbt_project/sqlfluff_stubs
	cd dbt_project && ../$(VENV)/bin/sqlfluff lint models macros

airflow: $(STAMP)
	@$(CLI) airflow $(if $(EXECUTOR),--executor $(EXECUTOR))

rollback: $(STAMP)
	@$(CLI) rollback

status: $(STAMP)
	@$(CLI) status

unlock: $(STAMP)
	@$(CLI) unlock

stop: $(STAMP)
	@$(CLI) stop

dashboards: $(STAMP)
	@$(SUPERSET) up

# The fault-injection suite (docs/reliability.md): kills, lost sources, two nights, readers.
# Two scenarios at once: a night of the small world is mostly one Python process (dbt), so two keep
# 2 cores busy; the scenario that restarts the server runs alone (tests/faults/conftest.py).
faults: $(STAMP)
	PYTHONPATH=plugins:. $(PY) -m pytest tests/faults/faults_suite.py --numprocesses 2 --dist load $(PYTEST_ARGS)

# The deployed Airflow (make airflow: API server, scheduler, dag-processor, triggerer, LocalExecutor
# and a Celery worker with Redis) runs a night triggered through the REST API. Real processes, minutes:
# its own target, run by CI after make test, so make test stays under 15 minutes.
test-deployment: $(STAMP)
	PYTHONPATH=plugins:. $(PY) -m pytest tests/e2e/deployed_airflow_e2e.py $(PYTEST_ARGS)

# Its two scenarios (the contract fixture, the demo warehouse) run at once, each with its own Superset.
test-dashboards: install-dashboards
	PYTHONPATH=plugins:. $(PY) -m pytest tests/e2e/dashboards_e2e.py --numprocesses 2 --dist load $(PYTEST_ARGS)

# Superset's own venv and Debian's chromium for the dashboard test (idempotent; CI starts it early, in the background).
install-dashboards: $(STAMP)
	@$(SUPERSET) install --browser

bench: $(STAMP)
	@PYTHONPATH=plugins:. $(PY) -m tools.bench --scale $(SCALE) $(if $(DAY_LOANS),--day-loans $(DAY_LOANS)) $(BENCH_ARGS)

bench-extract: $(STAMP)
	@PYTHONPATH=plugins:. $(PY) -m tools.bench.extract_modes --scale $(SCALE) $(BENCH_ARGS)

# Re-resolve the lock file after editing requirements.in.
lock: $(STAMP)
	$(UV) pip compile requirements.in --universal --python-version 3.11 -o requirements.lock

clean: stop
	rm -rf .local
