# The two set-up commands are `make run` and `make test` (see README.md). Everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
# quieter pip: the machine's extra indexes print a warning per package
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
KERNEL := mlops-workbench

.PHONY: install run test test-nbs test-py check-sync export lock bench clean-state help
help:
	@echo "make run    - install (pinned, into $(VENV)) and run the pipeline (dvc repro)"
	@echo "make test   - library notebooks, export/clean sync check, pytest"
	@echo "make docs   - build the docs site into _site/ (notebooks, tutorials, reports, model cards; no Quarto, offline)"
	@echo "make export - nbdev_clean + nbdev_export + README.md from nbs/index.ipynb"
	@echo "make bench  - stage timings and stage-machinery overhead (bench/README.md)"
	@echo "make lock   - refresh constraints.txt from the current environment"

$(VENV)/.installed: settings.ini setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -c constraints.txt -e '.[all,dev]' 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name 'Python (mlops-workbench)' >/dev/null
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/mlwb run
	@$(BIN)/mlwb metrics

test: install test-nbs check-sync browser test-py

test-nbs: install
	$(BIN)/nbdev_test --n_workers 2 --do_print

# nbdev's own CI check: the exported package and clean notebooks are what git has
check-sync: install
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export && $(BIN)/python tools/make_readme.py
	@git diff --exit-code -- nbs mlops_workbench README.md || { echo "nbs/, mlops_workbench/ or README.md out of sync: run 'make export' and commit"; exit 1; }

test-py: install
	$(BIN)/python -m pytest -v -ra --durations=25 tests

# the docs site: tools/build_docs.py (Sphinx + myst-nb on nbdev's processed notebooks); Quarto users: nbdev_docs
docs: install
	$(BIN)/python tools/build_docs.py $(DOCS_ARGS)
	@echo "open _site/index.html, or: $(BIN)/python -m http.server -d _site -b 127.0.0.1 8000"

# Debian's chromium + chromium-driver for the docs browser test (tests/test_docs.py)
browser:
	bash tools/install_browser.sh

export: install
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export && $(BIN)/python tools/make_readme.py

lock: install
	$(PIP) freeze --exclude-editable --exclude mlops-workbench | grep -v '^jupytext=' > constraints.txt

bench: install
	$(BIN)/python bench/stages.py
	$(BIN)/python bench/scale.py

# forget the embedded stores and pipeline outputs (not the code)
clean-state:
	rm -rf mlflow.db mlflow.db-* mlflow.db.lock mlartifacts milvus.db milvus.db.lock reports/*.ipynb reports/failed metrics plots models data/prepared data/quarantine registry sweeps .ray-checkpoints reports/model_cards
	find data/batches -mindepth 1 ! -name README.md -delete 2>/dev/null || true
