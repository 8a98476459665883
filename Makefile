# The two commands a user needs: `make serve` and `make test`.
# Everything else (the venv, npm packages) is set up on first use.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
STORE  ?= .model-store
PORT   ?= 8000

export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: venv serve test bench lint publish models rollback synth clean

$(STAMP): requirements.txt model/requirements.txt model/pyproject.toml $(wildcard package.json package-lock.json)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; fi
	touch $(STAMP)

venv: $(STAMP)

## Publish a model into ./.model-store if it has none, then serve the API on :8000
serve: venv
	STORE=$(STORE) PORT=$(PORT) PY=$(PY) scripts/serve.sh

## Run the whole test suite
test: venv
	$(PY) -m pytest

## Measure cold start, latency, memory and install size against the naive torch pipeline
bench: venv
	$(PY) bench/run.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

publish: venv
	$(PY) -m classifier publish --store $(STORE) $(if $(WEIGHTS),--weights $(WEIGHTS))

models: venv
	$(PY) -m classifier models --store $(STORE)

rollback: venv
	$(PY) -m classifier rollback --store $(STORE)

synth: venv
	npx cdk synth --all --quiet

clean:
	rm -rf $(VENV) node_modules cdk.out .pytest_cache .mypy_cache .ruff_cache test-output
