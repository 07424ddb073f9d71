# Two commands: `make repro` (run the pipeline) and `make test` (run the tests).
# Both first run the idempotent set-up: a virtual environment in $(VENV) with this package,
# its dependencies and the NLTK WordNet data. Override VENV to keep the environment elsewhere.
PYTHON ?= python3
VENV ?= .venv
export VENV PYTHON
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test bench-repro seeds clean-venv

setup:
	@bash scripts/setup.sh

repro: setup
	$(BIN)/dvc repro
	$(BIN)/mango readme

test: setup
	$(BIN)/python -m pytest -q

bench-repro: setup
	$(BIN)/python scripts/bench_repro.py

seeds: setup
	$(BIN)/python scripts/seed_spread.py

clean-venv:
	rm -rf $(VENV)
