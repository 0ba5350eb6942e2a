# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow bench bench-train train-panworld ship-panworld clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

# An eval-split episode: the shipped student is prefilled with its first 8 s of ground truth, then streams 60 s
# more with the episode's camera actions, beside the true world (generated | truth); then a 4-episode P1 eval of
# the same student writes the revisit plot. About 2 minutes on 2 CPU cores.
DEMO_SEED := 1000000
demo: setup
	$(BIN)/context-forcing generate --preset panworld --seed $(DEMO_SEED) --prefill-seconds 8 --seconds 60 \
		--out demo/panworld.mp4 --scale 8 --side-by-side --quality compatible --report demo/panworld.json
	$(BIN)/context-forcing eval --model context_forcing/checkpoints/panworld/student --episodes 4 --seconds 64 \
		--protocol p1 --report demo/eval.json --plots demo/plots
	@echo "demo: video demo/panworld.mp4 (left: generated, right: ground truth), report demo/panworld.json,"
	@echo "      revisit plot demo/plots/revisits.png, eval report demo/eval.json"

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

# The recipe of the shipped PanWorld models (docs/TRAINING.md, "The PanWorld recipe"), chained; each command
# resumes from its run directory, so the target can be re-run after an interruption (or in a new session).
# Teacher: 1000 updates at the sampler's timestep shift (5), then 4000 more from those weights at shift 2 with
# ERFT from update 250; ODE init distils its update-1000 weights, Stage 1 its update-3000 weights and Stage 2
# the final ones (the shipped teacher); the students stream with uniform admission (one slow frame per 4 chunks).
RUNS ?= $(HOME)/runs/pw
TRAIN := $(BIN)/context-forcing train
STUDENT_MEMORY := sink3-slow12-fast6:uniform4
train-panworld: setup
	$(TRAIN) teacher --preset panworld --run-dir $(RUNS)/teacher --steps 1000
	$(TRAIN) teacher --preset panworld --run-dir $(RUNS)/teacher-b --init $(RUNS)/teacher/checkpoints/step-001000 \
		--steps 4000 --set timestep_shift=2 --set erft.warmup_steps=250
	$(TRAIN) ode-init --preset panworld --run-dir $(RUNS)/ode-init --teacher $(RUNS)/teacher-b/checkpoints/step-001000 \
		--memory $(STUDENT_MEMORY) --steps 250
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/stage1 --teacher $(RUNS)/teacher-b/checkpoints/step-003000 \
		--init $(RUNS)/ode-init --memory $(STUDENT_MEMORY) --steps 300 --set probe_every=50
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/stage2 --teacher $(RUNS)/teacher-b/checkpoints/step-004000 \
		--init $(RUNS)/stage1 --memory $(STUDENT_MEMORY) --steps 150 --set probe_every=50 --threads 2

# Copy the trained models into the package (float16 storage) for shipping; the model cards are kept.
ship-panworld: setup
	$(BIN)/python -c "from context_forcing.model.shipped import export_checkpoint as e; \
		e('$(RUNS)/teacher-b/checkpoints/step-004000', 'context_forcing/checkpoints/panworld/teacher'); \
		e('$(RUNS)/stage2', 'context_forcing/checkpoints/panworld/student')"

clean:
	rm -rf $(VENV) demo
