# The two commands of the README: `make run` and `make test`.  Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check lint bench clean system-deps-run system-deps-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(VENV)/.installed $@

# The Debian packages each needs (a venv, fonts; the tests' tools), checked every time: cheap when
# present, installed as root (or with passwordless sudo), else named with the command to run.
system-deps-run system-deps-test:
	PYTHON=$(PYTHON) scripts/system-deps $(@:system-deps-%=%)

## run: Sealpost on its embedded default (SQLite, local keys and TSA) in the foreground
run: system-deps-run $(VENV)/.installed
	$(BIN)/sealpost serve

## test: the whole suite (SQLite, and PostgreSQL/RabbitMQ where they answer)
test: system-deps-test $(VENV)/.installed-test
	$(BIN)/pytest

## check: lint, format, types and tests
check: lint test

lint: system-deps-run $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

## bench: every benchmark, one after another, then one table of each figure beside its target
## (SMTP acceptance against Postfix, ledger, certificates, large messages, events, the API at a
## million communications, sequences, archive); `make bench QUICK=1` runs them at smoke-test
## sizes. Full output in bench/results/<date>-bench.log; method in docs/benchmarks.md.
bench: system-deps-test $(VENV)/.installed-test
	$(BIN)/python bench/table.py $(if $(QUICK),--quick)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
