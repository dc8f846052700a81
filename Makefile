# Two front doors (see README.md):
#   make demo   install, then run the local end-to-end pipeline on its defaults
#   make test   install, then run the test suite (every layer)
# One layer of the suite: make test-unit | test-functional | test-e2e; make coverage (branch coverage).
# and, outside CI (it installs LocalStack, ~1 min the first time):
#   make test-localstack   the local pipeline against a real LocalStack (scripts/localstack/run.py)
# The Lambdas run Python 3.12: the venv (tests, benches, the bytecode bundled) uses one when it finds one
# that runs (on PATH, or pyenv's), else python3.
PYTHON ?= $(or $(shell for p in python3.12 $(HOME)/.pyenv/versions/3.12*/bin/python3.12; do \
	$$p -c 'import sys; print(sys.executable)' 2>/dev/null && break; done),python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20
export CDK_DISABLE_CLI_TELEMETRY = true
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install demo test test-unit test-functional test-e2e coverage test-localstack lint bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml package.json package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/bxb-stream local

test: install
	$(BIN)/python -m pytest

# Pure tests: no moto, no chDB, no subprocess (tests/unit/conftest.py enforces it).
test-unit: install
	$(BIN)/python -m pytest tests/unit

# moto and the embedded chDB engine, in process.
test-functional: install
	$(BIN)/python -m pytest tests/functional

# The local pipeline, handlers and the CLI in a subprocess, CDK synth with cfn-lint.
test-e2e: install
	$(BIN)/python -m pytest tests/e2e

# The whole suite with branch coverage of bxb_runtime and bxb_stream (code run in subprocesses is not counted).
coverage: install
	$(BIN)/python -m pytest --cov --cov-report=term-missing:skip-covered

# Not part of .ci/run: LocalStack in host mode (Python >= 3.13, npm), both paths reconciled against it.
test-localstack: install
	$(BIN)/python scripts/localstack/run.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/transform.py
	$(BIN)/python bench/producer.py
	$(BIN)/python bench/http_ingest.py
	$(BIN)/python bench/clickhouse.py
	$(BIN)/python bench/firehose.py
	$(BIN)/python bench/local_e2e.py

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache
