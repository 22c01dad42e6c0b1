# The two commands of the README: `make demo` and `make test`.
# Each one sets up everything it needs on a fresh machine (a virtualenv in .venv).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python

.PHONY: setup demo test bench lint install-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

## Solve the bundled realistic scenario (2,000 orders, 300 stores, 10 warehouses) and print the summary.
## `omniroute fixtures cn-2000` finds it in a checkout and in an installed package alike.
demo: setup
	$(VENV)/bin/omniroute solve "$$($(VENV)/bin/omniroute fixtures cn-2000)" --out out/cn-2000 --time-limit 10 --overwrite

## Run the whole test suite (the service tests use the local PostgreSQL when it is up).
test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) -m benchmarks --suite standard

## A new user's install: `pip install .` without extras in a fresh virtualenv, then solve
## a bundled fixture and serve one route with it (no .venv needed).
install-check:
	PYTHON=$(PYTHON) .ci/install-check

lint: setup
	$(VENV)/bin/ruff check router solver api benchmarks tests
