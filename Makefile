# The two commands of the README: `make demo` and `make test`.
# Each one sets up everything it needs on a fresh machine (a virtualenv in .venv).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: setup demo test bench lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

## Solve the bundled realistic scenario (2,000 orders, 300 stores, 10 warehouses) and print the summary.
demo: setup
	$(VENV)/bin/omniroute solve fixtures/cn-2000 --out out/cn-2000 --time-limit 10

## Run the whole test suite (the service tests use the local PostgreSQL when it is up).
test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks --suite standard

lint: setup
	$(VENV)/bin/ruff check router solver api benchmarks tests
