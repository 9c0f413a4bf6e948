# Two commands set everything up on a fresh machine:
#   make demo   - create .venv, install pubsub, run the quickstart against ./demo.db
#   make test   - create .venv, install the test extras, run lint, types and the whole suite
# Both are idempotent: the virtualenv is rebuilt only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The stamps name a checksum of pyproject.toml, so a changed dependency list reinstalls.
SUM    := $(shell cksum pyproject.toml 2>/dev/null | cut -d' ' -f1)
BASE   := $(VENV)/.installed-$(SUM)
EXTRAS := $(VENV)/.installed-test-$(SUM)

.PHONY: demo test lint types unit soak fmt bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BASE): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(EXTRAS): | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(BASE)

demo: $(BASE)
	PATH="$(CURDIR)/$(BIN):$$PATH" PUBSUB_DB="$(CURDIR)/demo.db" sh examples/quickstart.sh

lint: $(EXTRAS)
	$(BIN)/ruff check pubsub tests examples benchmarks
	$(BIN)/ruff format --check pubsub tests examples benchmarks

types: $(EXTRAS)
	$(BIN)/mypy --strict pubsub

# Compiling first spares each of the suite's CLI subprocesses from compiling pubsub again
# when bytecode writing is off (PYTHONDONTWRITEBYTECODE).
unit: $(EXTRAS)
	$(BIN)/python -m compileall -q pubsub
	$(BIN)/pytest -q --durations=15

test: lint types unit

# The fault suites at full counts (thousands of kills, trials and fuzz cases; about an hour),
# and the share groups' SIGKILL test with 500 kills.
SOAK := tests/reliability tests/concurrency/test_shares.py::test_at_least_once_under_sigkill \
        tests/serve/test_kill.py

soak: $(EXTRAS)
	PUBSUB_SOAK=1 $(BIN)/pytest -q -raP --timeout 3600 $(SOAK)

fmt: $(EXTRAS)
	$(BIN)/ruff check --fix pubsub tests examples benchmarks
	$(BIN)/ruff format pubsub tests examples benchmarks

docs: $(BASE)
	$(BIN)/python -m pubsub.commands.clidoc > docs/cli.md

bench: $(EXTRAS)
	$(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache demo.db demo.db-wal demo.db-shm demo.db-reserve
