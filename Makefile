# The two set-up commands are `make run` and `make test` (see README.md). Everything else is a step of them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)
PIP := $(BIN)/python -m pip --disable-pip-version-check
# pip's output as progress: one line per package with the elapsed time, its noise (the machine's extra indexes warn
# once per package; "Requirement already satisfied" on a re-run) filtered or counted: tools/pip_progress.py
PIP_QUIET_ERR := 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
PIP_PROGRESS := | $(BIN)/python tools/pip_progress.py
KERNEL := mlops-workbench
LAB_PORT ?= 8888

.PHONY: install run test test-fast test-nbs nbdev-test test-py check-sync export lock bench clean-state help lab plots
help:
	@echo "make run    - install (pinned, into $(VENV)) and run the pipeline (dvc repro)"
	@echo "make test   - library notebooks, export/clean sync check, pytest"
	@echo "make test-fast - the fast tier for the inner loop (no pipeline run, cluster, venv or browser; ~2 min)"
	@echo "make lab    - JupyterLab on 127.0.0.1:$(LAB_PORT) with a token, the project kernel, opened in nbs/"
	@echo "make plots  - DVC's plots page (dvc_plots/index.html), offline: Vega vendored from npm, no CDN"
	@echo "make docs   - build the docs site into _site/ (notebooks, tutorials, reports, model cards; no Quarto, offline)"
	@echo "make export - nbdev_clean + nbdev_export + README.md from nbs/index.ipynb"
	@echo "make bench  - stage timings and stage-machinery overhead (bench/README.md)"
	@echo "make lock   - refresh constraints.txt from the current environment"

$(VENV)/.installed: settings.ini setup.py constraints.txt
	@echo "==> install 1/5: virtual environment $(VENV)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> install 2/5: pinned packages (about 290; minutes on a fresh machine, one line per package)"
	set -o pipefail; $(PIP) install --progress-bar off -c constraints.txt -e '.[all,dev]' $(PIP_QUIET_ERR) $(PIP_PROGRESS)
	@# jsonschema imports rfc3987-syntax (pulled in by JupyterLab's jupyter-events) if present, which builds a Lark
	@# grammar at import: +3 s measured on every papermill/nbclient start here. jsonschema works without it.
	@echo "==> install 3/5: drop rfc3987-syntax (slows every notebook start by seconds)"
	$(PIP) uninstall -y -q rfc3987-syntax 2>/dev/null || true
	@echo "==> install 4/5: Jupyter kernel '$(KERNEL)'"
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name 'Python (mlops-workbench)' >/dev/null
	@echo "==> install 5/5: Vega for the offline plots page (npm; optional)"
	$(BIN)/python tools/plots.py --setup || echo "plots: not set up (above): 'make plots' retries it"
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/mlwb run
	@$(BIN)/mlwb metrics

test: install test-nbs check-sync browser test-py

# the library notebooks, executed as nbdev_test executes them (every cell but `#| eval: false`, from nbs/, failing on any
# error) on the project kernel, into the docs' execution cache (_build/docs/exec, keyed by content): the docs tests
# and `make docs` show these executions instead of running the notebooks again. nbdev's own runner: make nbdev-test
test-nbs: install
	$(BIN)/python tools/build_docs.py --execute-only

nbdev-test: install
	$(BIN)/nbdev_test --n_workers 2 --do_print

# nbdev's own CI check: the exported package and clean notebooks are what git has
check-sync: install
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export && $(BIN)/python tools/make_readme.py
	@git diff --exit-code -- nbs mlops_workbench README.md || { echo "nbs/, mlops_workbench/ or README.md out of sync: run 'make export' and commit"; exit 1; }

# every test, as three pytest processes at once (tools/pytest_shards.py): the tests that read the six tutorials' runs
# (run once per `make test`, two at a time: MLWB_TUTORIAL_WORKERS=1 runs them one after the other), the tests that read
# the pipeline run, and the rest on two xdist workers. PYTEST_ARGS='--serial' runs them all in one process
test-py: install
	$(BIN)/python tools/pytest_shards.py -v -ra --durations=0 $(PYTEST_ARGS)

# the inner loop: every test not marked slow (tests/conftest.py marks those that run a pipeline, a tutorial, a cluster,
# a fresh venv or a browser); PYTEST_ARGS='-n 2' runs it on two pytest-xdist workers
test-fast: install
	$(BIN)/python -m pytest -q -ra -m 'not slow' --durations=15 $(PYTEST_ARGS) tests

# the docs site: tools/build_docs.py (Sphinx + myst-nb on nbdev's processed notebooks); Quarto users: nbdev_docs
docs: install
	$(BIN)/python tools/build_docs.py $(DOCS_ARGS)
	@echo "open _site/index.html, or: $(BIN)/python -m http.server -d _site -b 127.0.0.1 8000"

# JupyterLab: loopback only, a token (printed in the URL; JUPYTER_TOKEN to choose it), the project kernel by default,
# the file browser opened in nbs/. LAB_PORT=... to move it; extra options: make lab LAB_ARGS='--no-browser'
lab: install
	$(BIN)/python tools/lab.py --port $(LAB_PORT) $(LAB_ARGS)

# DVC's plots page offline (tools/plots.py): dvc_plots/index.html with Vega inlined
plots: install
	$(BIN)/python tools/plots.py

# Debian's chromium + chromium-driver for the docs browser test (tests/test_docs.py)
browser:
	bash tools/install_browser.sh

export: install
	$(BIN)/nbdev_clean && $(BIN)/nbdev_export && $(BIN)/python tools/make_readme.py

lock: install
	$(PIP) freeze --exclude-editable --exclude mlops-workbench | grep -v '^jupytext=' > constraints.txt

# issue 13's goals, each paired with its baseline in the same run (about 2 h here; results in bench/results, read in
# bench/README.md): stage overhead (13.3), whole runs pooled vs cold kernels (13.3) and shared vs private Ray (13.4),
# training, sweep and tracking (13.4, 13.5), growth to 50x and the embed stage's memory at 500x (13.1), vector search
# against exact search (13.2)
bench: install
	$(BIN)/python bench/stages.py --pool
	$(BIN)/python bench/pool.py
	$(BIN)/python bench/pool.py --compare ray --params small
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/growth.py
	$(BIN)/python bench/embed_memory.py --scale 500 --reps 3 --baseline 634e2fe
	$(BIN)/python bench/vectors.py

# forget the embedded stores and pipeline outputs (not the code)
clean-state:
	rm -rf mlflow.db mlflow.db-* mlflow.db.lock mlartifacts milvus.db milvus.db.lock reports/*.ipynb reports/failed metrics plots models data/prepared data/quarantine registry sweeps .ray-checkpoints reports/model_cards
	find data/batches -mindepth 1 ! -name README.md -delete 2>/dev/null || true
