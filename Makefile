# The two commands a user needs: `make serve` and `make test`.
# Everything else (the venv, npm packages) is set up on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed
STORE  ?= .model-store
PORT   ?= 8000
DASHBOARD      ?= 1
DASHBOARD_PORT ?= 8501

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: venv lock serve test test-fast mutation bench load lint publish models rollback synth clean

# The venv holds exactly what uv.lock pins. pip (from the interpreter that made the venv)
# installs only uv, hash-checked from requirements-uv.txt; uv then installs everything
# else from the lock, never re-resolving it (--frozen), and byte-compiles it as pip would
# (first imports stay fast, and Streamlit's threads do not race a slow first import of
# pandas). npm installs the CDK CLI from package-lock.json.
$(STAMP): uv.lock requirements-uv.txt pyproject.toml model/pyproject.toml package.json package-lock.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	test -x $(UV) || $(PY) -m pip install --quiet --no-deps --require-hashes -r requirements-uv.txt
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --compile-bytecode --quiet
	npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

venv: $(STAMP)

## Re-resolve uv.lock (UPGRADE=1: to the newest allowed versions) and regenerate the requirements files
lock: venv
	$(UV) lock $(if $(UPGRADE),--upgrade)
	$(PY) scripts/lock.py

## Publish a model into ./.model-store if it holds none, then serve the API on :8000 and the dashboard on :8501
## (DASHBOARD=0: the API alone). A store with versions but none current is left for you to promote one.
serve: venv
	STORE=$(STORE) PORT=$(PORT) DASHBOARD=$(DASHBOARD) DASHBOARD_PORT=$(DASHBOARD_PORT) PY=$(PY) scripts/serve.sh

## Run the whole test suite: every tier (unit, service, infra, dashboard, repo)
test: venv
	$(PY) -m pytest

## The unit tier alone (tests/unit): no server, no subprocess, no network, no CDK; under a minute
test-fast: venv
	$(PY) -m pytest tests/unit -q

## Mutation testing (mutmut) of store, records, imaging, errors and payloads against their own test
## files: slow (tens of minutes), so not part of `make test`. MUTANTS='classifier.store.layout.*' narrows it.
## Scores and survivors: test-output/mutation/scores.md (docs/testing.md explains the setup).
MUTATION_DIR := $(CURDIR)/test-output/mutation
mutation: venv
	rm -rf $(MUTATION_DIR) && mkdir -p $(MUTATION_DIR)
	ln -s $(CURDIR)/model/classifier $(MUTATION_DIR)/classifier
	ln -s $(CURDIR)/tests $(MUTATION_DIR)/tests
	ln -s $(CURDIR)/pyproject.toml $(MUTATION_DIR)/pyproject.toml
	$(PY) -m classifier publish --store $(MUTATION_DIR)/published --weights random
	cd $(MUTATION_DIR) && TESTS_PUBLISHED_STORE=$(MUTATION_DIR)/published $(CURDIR)/$(VENV)/bin/mutmut run $(MUTANTS)
	cd $(MUTATION_DIR) && $(CURDIR)/$(PY) $(CURDIR)/tests/mutation_scores.py | tee $(MUTATION_DIR)/scores.md

## Measure cold start, latency, memory and install size against the naive torch pipeline
## (AGAINST=REV: also against the runtime as it was at git revision REV), bulk and records, rollouts,
## and the model table (five architectures, fp32 and int8). The summaries are bench/results*.md
## (committed); the full reports bench/.work/*.json (not).
bench: venv
	$(PY) bench/run.py --summary bench/results.md $(if $(AGAINST),--against $(AGAINST))
	$(PY) bench/bulk.py --summary bench/results-bulk.md
	$(PY) bench/records_dynamodb.py --summary bench/results-records.md
	$(PY) bench/rollouts.py --summary bench/results-rollouts.md
	$(PY) bench/models.py --summary bench/results-models.md

## The local API under load: Locust headless, USERS users (16) for SECONDS seconds (60), against a server
## it starts (or URL=http://... of a running `make serve`, PID=its process id for its memory). Summary:
## bench/results-load.md (committed); everything else under bench/.work/load/.
USERS   ?= 16
SECONDS ?= 60
load: venv
	$(PY) bench/load.py --users $(USERS) --seconds $(SECONDS) --summary bench/results-load.md \
		$(if $(URL),--url $(URL)) $(if $(PID),--pid $(PID))

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

publish: venv
	$(PY) -m classifier publish --store $(STORE) $(if $(WEIGHTS),--weights $(WEIGHTS))

models: venv
	$(PY) -m classifier models --store $(STORE)

rollback: venv
	$(PY) -m classifier rollback --store $(STORE)

# `cdk synth` with no stack names synthesizes every stack (the pinned CLI knows no --all for synth).
synth: venv
	npx cdk synth --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache test-output
