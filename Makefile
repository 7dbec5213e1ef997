# Everything a fresh machine needs is installed by these targets themselves.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed  ## the whole story on a synthetic data set, embedded store
	$(BIN)/ledger demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy ledger

test: lint  ## lint, type checks and the whole test suite
	$(BIN)/pytest

bench: $(BIN)/.installed  ## payroll at a tenth of the country (380,000 beneficiaries)
	$(BIN)/python bench/payroll_bench.py

clean:
	rm -rf $(VENV) .ledger out .pytest_cache .mypy_cache .ruff_cache
