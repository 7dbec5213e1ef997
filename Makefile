# Everything a fresh machine needs is installed by these targets themselves.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench bench-deaths bench-national services-up services-down clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## the whole story on a synthetic data set, embedded store
	$(BIN)/ledger demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy ledger projections adapters replay

# The whole suite against the real PostgreSQL server and Kafka broker, started by the project
# itself (scripts/services) and stopped afterwards whatever the result, unless they were
# already running before.
test: lint  ## lint, type checks and the whole test suite, services included
	@mkdir -p .state
	scripts/browser
	@scripts/services status 2>&1 | grep -c ': up' > .state/was-up || true
	scripts/services up > .state/services.env
	@set -a; . ./.state/services.env; set +a; status=0; \
	  $(BIN)/pytest || status=$$?; \
	  if [ "$$(cat .state/was-up)" != 2 ]; then scripts/services down; fi; exit $$status

# The whole country on PostgreSQL: 3,800,000 people over 12 months by default (long: see
# README); BENCH_ARGS='--people 380000 --months 2' for a smaller run. Starts the services.
bench-national: $(BIN)/.installed  ## a national year on PostgreSQL, beside its targets
	$(BIN)/python bench/national.py $(BENCH_ARGS)

services-up:  ## PostgreSQL and Kafka on loopback, for running pytest by hand
	@scripts/services up

services-down:
	@scripts/services down

# Each bench makes its own stores, with a throwaway chain key unless LEDGER_CHAIN_KEY is set;
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS='--beneficiaries 20000'.
bench: $(BIN)/.installed  ## payroll at a tenth of the country (380,000 beneficiaries)
	$(BIN)/python bench/payroll_bench.py $(BENCH_ARGS)

bench-deaths: $(BIN)/.installed  ## 200,000 death registrations through Kafka into PostgreSQL
	eval "$$(scripts/services up)" && $(BIN)/python bench/deaths_bench.py $(BENCH_ARGS)

clean: services-down
	rm -rf $(VENV) .ledger .state out .pytest_cache .mypy_cache .ruff_cache
