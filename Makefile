# Two commands: `make repro` (run the pipeline) and `make test` (run the tests).
# Both first run the idempotent set-up: a virtual environment in $(VENV) with this package,
# its dependencies and the NLTK WordNet data. Override VENV to keep the environment elsewhere.
PYTHON ?= python3
VENV ?= .venv
export VENV PYTHON
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test annotate-check browse-check bench-repro seeds select coattention-variants precision-check select-backbone real real-openmoji clean-venv

setup:
	@bash scripts/setup.sh

# repair_dvc_state: a DVC process killed while writing .dvc/tmp/rwlock or dvc.lock leaves them
# unreadable, and DVC then refuses to run; the script fixes only that (see its docstring).
repro: setup
	$(BIN)/python scripts/repair_dvc_state.py
	$(BIN)/dvc repro
	$(BIN)/mango readme

test: setup
	$(BIN)/python -m pytest -q

bench-repro: setup
	$(BIN)/python scripts/bench_repro.py

seeds: setup
	$(BIN)/python scripts/seed_spread.py

# Every trained method's settings on the validation split (scripts/selection_plan.yaml):
# reports/selection.json, which the report copies into reports/evaluation.json.
select: setup
	$(BIN)/python scripts/select_settings.py --plan scripts/selection_plan.yaml --out reports/selection.json

# The metrics with precision: fp32 against the committed ones (bf16 autocast where native).
precision-check: setup
	$(BIN)/python scripts/precision_check.py

# MangoNet's co-attention variants against NGCN, scored once on the test split (after selection).
coattention-variants: setup
	$(BIN)/python scripts/coattention_variants.py

# The default backbone's candidates, each run up to InsAtten on the validation split (not test).
select-backbone: setup
	$(BIN)/python scripts/select_backbone.py

# The whole pipeline on real human-tagged pictures (Debian's tuxpaint-stamps-default: category
# folders -> labels, English captions -> tags) with the pretrained MobileNetV2, over 3 seeds:
# reports/real/tuxpaint/. Captions are short and rare-worded, so |T| is 1000 there.
data/raw/tuxpaint: | setup
	$(BIN)/mango convert tuxpaint --out $@ --no-progress

real: setup data/raw/tuxpaint
	$(BIN)/python scripts/real_collection.py data/raw/tuxpaint -S lemmatise.vocab_size=1000

# The same on npm's openmoji (install with `npm install openmoji@17.0.0`; group/subgroup -> labels).
data/raw/openmoji: | setup
	$(BIN)/mango convert openmoji --root node_modules/openmoji --out $@ --no-progress

real-openmoji: setup data/raw/openmoji
	$(BIN)/python scripts/real_collection.py data/raw/openmoji

# `mango annotate` on the workspace's test images (plus missing/corrupt photos) against the MangoNet stage.
annotate-check: setup
	$(BIN)/python scripts/annotate_check.py

# The results page in headless Chromium (Debian's chromium, installed here when missing and root).
browse-check: setup
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true
	$(BIN)/python scripts/browse_check.py

clean-venv:
	rm -rf $(VENV)
