# `make serve` and `make test` work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
REALM ?= $(or $(ESL_BRIDGE_REALM),pbx.localhost)

.PHONY: serve test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# First run: creates the account "default" (realm $ESL_BRIDGE_REALM or pbx.localhost)
# and prints its API key; later runs leave the database alone.
serve: $(VENV)/.installed
	$(BIN)/esl-bridge init --if-empty --account-name default --realm $(REALM)
	$(BIN)/esl-bridge serve

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/vulture
	$(BIN)/mypy

# The suite runs as TEST_JOBS pytest processes at once (tests/parallel.py): most tests wait on
# sockets and timers, so three processes on two cores finish well before one.
TEST_JOBS ?= 3

test: $(VENV)/.installed-test lint
	$(BIN)/python tests/parallel.py -j $(TEST_JOBS) $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python bench/esl_pool.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/directory.py
	$(BIN)/python bench/quickcall.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/restarts.py

clean:
	rm -rf $(VENV) build *.egg-info
