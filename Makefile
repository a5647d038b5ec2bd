# Assign — one command per task, the same for people and CI.  `make help` lists them.
PY ?= python3
PYTEST_ARGS ?=
CLUSTER_ARGS ?=
# every target installs Assign the same way (editable, from this checkout), so one never
# replaces the code another runs
INSTALL = $(PY) -m pip install -q -e

.PHONY: help install serve test test-deep lint typecheck bench demo load cluster clean

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-10s %s\n", $$1, $$2}'

install: ## install Assign with its test and lint tools
	$(INSTALL) '.[dev]'

serve: ## install and run API + dispatcher on ./assign.db
	$(INSTALL) . && $(PY) -m assign serve

test: ## install and run the test suite (SQLite, and PostgreSQL when reachable)
	$(INSTALL) '.[test]' && $(PY) -m pytest $(PYTEST_ARGS)

test-deep: ## the test suite with its long cases at full size (ASSIGN_TEST_DEEP=1)
	$(INSTALL) '.[test]' && ASSIGN_TEST_DEEP=1 $(PY) -m pytest $(PYTEST_ARGS)

cluster: ## PgBouncer, a migration, two API processes and a dispatcher on local PostgreSQL
	$(INSTALL) . && $(PY) deploy/cluster.py $(CLUSTER_ARGS)

lint: ## ruff, formatting, mypy, and migrations in step with the tables
	ruff check src tests bench scripts && ruff format --check src tests bench scripts && mypy \
		&& $(PY) scripts/check_migrations.py

bench: ## the benchmarks of bench/ on PostgreSQL (prints tables)
	$(PY) bench/run_all.py

load: ## load test: 2 API processes + dispatcher on PostgreSQL, 200 clients, 60 s (LOAD_ARGS=...)
	$(PY) bench/load.py $(LOAD_ARGS)

demo: ## a simulated fleet end to end, with live progress
	$(INSTALL) . && $(PY) -m assign demo

clean: ## remove local databases and caches
	rm -rf assign.db assign.db-* assign.db.secret .pytest_cache .ruff_cache .mypy_cache
