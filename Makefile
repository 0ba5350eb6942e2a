# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench bench-train train-panworld clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/context-forcing generate --preset panworld --seconds 30 --seed 0 --out demo/panworld.mp4 \
		--scale 8 --side-by-side --report demo/panworld.json

test: setup
	$(BIN)/python -m pytest -n 2

test-slow: setup  # exit status 5 = no test is marked slow at the moment
	$(BIN)/python -m pytest -n 2 -m slow || test $$? -eq 5

bench: setup
	$(BIN)/python benchmarks/streaming.py

# One thread by default, so it can run beside a training job; THREADS=2 (the core count) when the machine is free.
THREADS ?= 1
bench-train: setup
	$(BIN)/python benchmarks/training.py --threads $(THREADS)

# The four training stages at the panworld preset, chained; each resumes from its run directory, so the
# command can be re-run after an interruption (or a new session). Budgets on 2 CPU cores: docs/TRAINING.md.
RUNS ?= $(HOME)/runs/panworld
TRAIN := $(BIN)/context-forcing train
train-panworld: setup
	$(TRAIN) teacher --preset panworld --run-dir $(RUNS)/teacher --steps 8000
	$(TRAIN) ode-init --preset panworld --run-dir $(RUNS)/ode-init --teacher $(RUNS)/teacher --steps 600
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/stage1 --teacher $(RUNS)/teacher --init $(RUNS)/ode-init \
		--steps 600
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/stage2 --teacher $(RUNS)/teacher --init $(RUNS)/stage1 \
		--steps 500

clean:
	rm -rf $(VENV) demo
