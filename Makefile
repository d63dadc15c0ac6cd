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

## bench: ledger benchmark (records/s sealed, proof verifications/s), then reminder sequences
## (enrolments/s, due step -> send committed p50/p99; modest sizes: see docs/benchmarks.md),
## then the archive: ingest messages/s over the SMTP journal and the service, IMAP pull from a
## local Dovecot, and search p50/p95 over 100,000 messages on PostgreSQL (--messages 1000000
## for the million: docs/archive-search.md); the REST API at 1,000,000 + 100,000 communications
## (req/s, p50/p99 per list filter, EXPLAINs)
bench: system-deps-test $(VENV)/.installed-test
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/sequences.py --enrolments 20000 --single 500 --dispatch 2000
	$(BIN)/python bench/archive.py --messages 1000 --clients 8
	$(BIN)/python bench/archive_imap.py --messages 1000
	$(BIN)/python bench/archive_search.py --messages 100000
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
