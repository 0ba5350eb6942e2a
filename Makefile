# The README's two commands: `make demo` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test browser screenshot bench-serve test-slow lint bench soak bench-train profile train-panworld train-panworld-all train-panworld-drift train-panworld-lowcfg train-panworld-8tok eval-panworld-all eval-panworld-g46 eval-panworld-8tok results-panworld ship-panworld clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,serve,wan]'  # wan: tests/wan run too
	$(BIN)/pip install --quiet -c constraints.txt ruff  # the linter, pinned (make lint)
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

# ruff with the rules selected in pyproject.toml ([tool.ruff.lint]); `make test` (so CI) runs it first
lint: setup
	$(BIN)/ruff check context_forcing tests benchmarks

test: setup lint browser
	$(BIN)/python -m pytest -n 2

# The browser test (`pytest -k browser`) drives Debian's Chromium through its chromedriver; installed only when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }

# Refresh the README's picture of the live page (docs/images/serve.png) with the browser test's run.
screenshot: setup browser
	CF_SERVE_SCREENSHOT=docs/images/serve.png $(BIN)/python -m pytest -q -p no:xdist -k browser tests/serve

# N live sessions on loopback for a bounded time: frames/s per session, server memory, clean disconnects.
bench-serve: setup
	$(BIN)/python benchmarks/serve_load.py

test-slow: setup  # exit status 5 = no test is marked slow at the moment
	$(BIN)/python -m pytest -n 2 -m slow || test $$? -eq 5

bench: setup
	$(BIN)/python benchmarks/streaming.py

# 30 minutes of video (7200 latent frames) at the panworld preset with the default memory: Python-allocated memory
# and the session's state at 1, 10 and 30 minutes must stay flat (docs/BENCHMARKS.md). One thread, long.
# THREADS: the soak's, one by default, so it can run beside a training job
THREADS ?= 1
soak: setup
	$(BIN)/python benchmarks/soak.py --threads $(THREADS)

# Training steps at the machine's core count (issue 12); run benchmarks/training.py --threads 1 beside a job.
bench-train: setup
	$(BIN)/python benchmarks/training.py

# Where a chunk step's and a training update's time goes (issue 12): GEMM / attention / overhead shares, top ops
# and Python functions, one JSON document (docs/BENCHMARKS.md, "Profile"). Threads: the machine's core count.
profile: setup
	$(BIN)/python benchmarks/breakdown.py

# The recipe of the shipped PanWorld models (docs/TRAINING.md, "The PanWorld recipe"), chained; each command
# resumes from its run directory, so the target can be re-run after an interruption (or in a new session).
# 16 tokens per frame (16x4 strips: `--model patch=1,16,4`); teacher: 5000 updates at timestep shift 2 with ERFT
# from update 250; ODE init, Stage 1 and Stage 2 all distil its update-5000 weights (the shipped teacher); the
# student streams with uniform admission (one slow frame per 4 chunks).
RUNS ?= $(HOME)/runs/pw
TRAIN := $(BIN)/context-forcing train
STUDENT_MEMORY := sink3-slow12-fast6:uniform4
PATCH16 := --model patch=1,16,4
PROBE := --set probe_every=50
TEACHER16 := $(RUNS)/teacher16/checkpoints/step-005000
train-panworld: setup
	$(TRAIN) teacher --preset panworld --run-dir $(RUNS)/teacher16 $(PATCH16) --steps 5000 \
		--set timestep_shift=2 --set erft.warmup_steps=250
	$(TRAIN) ode-init --preset panworld --run-dir $(RUNS)/ode-init16b --teacher $(TEACHER16) \
		--memory $(STUDENT_MEMORY) --steps 250 $(PATCH16) $(PROBE)
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/stage1-16b --teacher $(TEACHER16) --init $(RUNS)/ode-init16b \
		--memory $(STUDENT_MEMORY) --steps 300 $(PATCH16) $(PROBE)
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/stage2-16b --teacher $(TEACHER16) --init $(RUNS)/stage1-16b \
		--memory $(STUDENT_MEMORY) --steps 150 $(PATCH16) $(PROBE)

# The comparison of docs/RESULTS.md (issue 8): the Context Forcing chain above, then the baselines at the same
# student updates (ODE init 250 + DMD 450), sharing the teacher and the ODE init. Each member resumes.
# - Self-Forcing-style: Stage 1 (21-frame windows) for all 450 DMD updates with a plain rolling window and absolute
#   positions (window-21:absolute).
# - LongLive-style: the Self-Forcing-style run's update 300, then 150 Stage 2 updates of long rollouts with a frame
#   sink and a rolling window (sink3-window18), the short-window teacher seeing the target window only.
# - Infinity-RoPE-style: the Self-Forcing-style weights run training-free with sink3-window18:bounded (eval only).
# - Admission ablation: the Context Forcing Stage 1, then 150 Stage 2 updates with similarity admission.
train-panworld-all: train-panworld
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/sf-style16c --teacher $(TEACHER16) --init $(RUNS)/ode-init16b \
		--memory window-21:absolute --steps 300 $(PATCH16) $(PROBE)
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/longlive-style16c --teacher $(TEACHER16) \
		--init $(RUNS)/sf-style16c --memory sink3-window18 --steps 150 $(PATCH16) $(PROBE) --set dmd.teacher_context=none
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/sf-style16c-b --teacher $(TEACHER16) --init $(RUNS)/sf-style16c \
		--memory window-21:absolute --steps 150 $(PATCH16) $(PROBE)
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/stage2-similarity16b --teacher $(TEACHER16) \
		--init $(RUNS)/stage1-16b --memory sink3-slow12-fast6 --steps 150 $(PATCH16) $(PROBE)

# Against the student's free-rollout drift (docs/RESULTS.md, "How the shipped set was found"): 60 more Stage 2 updates
# of the Context Forcing student, (a) with rollouts of 120-240 frames, (b) at teacher guidance 1 and (c) 2.5
# (Stage 2's: 6); then (b) continued to 150 updates (a copy of its run directory, resumed), and (b) with teacher
# and critic seeing the target window only (the context-teacher ablation). The reported runs
# started from the float16 exports of stage2-16b and teacher16 (the files shipped at commit 5f934c2); these
# commands start from the run directories (float32).
DRIFT := --preset panworld --teacher $(TEACHER16) --init $(RUNS)/stage2-16b --memory $(STUDENT_MEMORY) $(PATCH16) \
	--set probe_every=30 --set probe_episodes=4 --set checkpoint_every=10
train-panworld-drift: train-panworld
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-long16 $(DRIFT) --steps 60 --set curriculum.n_max_end=240 \
		--set curriculum.n_max_start=120 --set curriculum.n_min=120 --set curriculum.ramp_steps=60
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-g1 $(DRIFT) --steps 60 --set dmd.guidance=1
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-g2.5 $(DRIFT) --steps 60 --set dmd.guidance=2.5
	test -d $(RUNS)/stage2-g1-150 || cp -r $(RUNS)/stage2-g1 $(RUNS)/stage2-g1-150
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-g1-150 $(DRIFT) --steps 150 --set dmd.guidance=1
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-g1-noctx $(DRIFT) --steps 60 --set dmd.guidance=1 \
		--set dmd.teacher_context=none

# The shipped students (since the swap after commit a46feb7; docs/RESULTS.md): the recipe's ODE init from the
# shipped teacher, Stage 1 and Stage 2 at teacher guidance 1 (before: 4 and 6), Stage 2 straight from the ODE
# init (an ablation), the comparison's baselines on this line (Self-Forcing-style, LongLive-style; issue 8's
# updates), the trained admission ablation (Stage 2 with similarity admission) and Stage 2 with uniform8. make ship-panworld exports stage2-16c-g1, sf-style16c-g1-b and longlive-style16c-g1.
LOWCFG = --preset panworld --teacher $(SHIPPED)/teacher --memory $(STUDENT_MEMORY) $(PATCH16) --set probe_every=50
# the baselines on that line (as in train-panworld-all, from ode-init16c, every DMD stage at guidance 1)
LOWCFG_BASE = --preset panworld --teacher $(SHIPPED)/teacher $(PATCH16) --set probe_every=50 --set dmd.guidance=1
train-panworld-lowcfg: setup
	$(TRAIN) ode-init --run-dir $(RUNS)/ode-init16c $(LOWCFG) --steps 250
	$(TRAIN) stage1 --run-dir $(RUNS)/stage1-16c-g1 $(LOWCFG) --init $(RUNS)/ode-init16c --steps 300 \
		--set dmd.guidance=1
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-16c-g1-direct $(LOWCFG) --init $(RUNS)/ode-init16c --steps 150 \
		--set dmd.guidance=1
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-16c-g1 $(LOWCFG) --init $(RUNS)/stage1-16c-g1 --steps 150 \
		--set dmd.guidance=1
	$(TRAIN) stage1 --run-dir $(RUNS)/sf-style16c-g1 $(LOWCFG_BASE) --init $(RUNS)/ode-init16c \
		--memory window-21:absolute --steps 300
	$(TRAIN) stage2 --run-dir $(RUNS)/longlive-style16c-g1 $(LOWCFG_BASE) --init $(RUNS)/sf-style16c-g1 \
		--memory sink3-window18 --steps 150 --set dmd.teacher_context=none
	$(TRAIN) stage1 --run-dir $(RUNS)/sf-style16c-g1-b $(LOWCFG_BASE) --init $(RUNS)/sf-style16c-g1 \
		--memory window-21:absolute --steps 150
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-similarity16c-g1 $(LOWCFG_BASE) --init $(RUNS)/stage1-16c-g1 \
		--memory sink3-slow12-fast6 --steps 150
	$(TRAIN) stage2 --run-dir $(RUNS)/stage2-16c-g1-u8 $(LOWCFG_BASE) --init $(RUNS)/stage1-16c-g1 \
		--memory sink3-slow12-fast6:uniform8 --steps 150

# The first line (8 tokens per frame, shipped until commit 4672f35; docs/RESULTS.md, "The first line"): teacher 1000
# updates at shift 5, then 4000 more at shift 2 with ERFT from update 250; ODE init distils its update-1000 weights,
# Stage 1 its update-3000 and Stage 2 its update-4000 weights; then the same baselines, the trained admission
# ablation (Stage 2 with similarity admission) and LongLive-style from an ODE init of its own memory.
train-panworld-8tok: setup
	$(TRAIN) teacher --preset panworld --run-dir $(RUNS)/teacher --steps 1000
	$(TRAIN) teacher --preset panworld --run-dir $(RUNS)/teacher-b --init $(RUNS)/teacher/checkpoints/step-001000 \
		--steps 4000 --set timestep_shift=2 --set erft.warmup_steps=250
	$(TRAIN) ode-init --preset panworld --run-dir $(RUNS)/ode-init --teacher $(RUNS)/teacher-b/checkpoints/step-001000 \
		--memory $(STUDENT_MEMORY) --steps 250
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/stage1 --teacher $(RUNS)/teacher-b/checkpoints/step-003000 \
		--init $(RUNS)/ode-init --memory $(STUDENT_MEMORY) --steps 300 --set probe_every=50
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/stage2 --teacher $(RUNS)/teacher-b/checkpoints/step-004000 \
		--init $(RUNS)/stage1 --memory $(STUDENT_MEMORY) --steps 150 --set probe_every=50 --threads 2
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/sf-style --teacher $(RUNS)/teacher-b/checkpoints/step-003000 \
		--init $(RUNS)/ode-init --memory window-21:absolute --steps 300 --set probe_every=50
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/sf-style-b --teacher $(RUNS)/teacher-b/checkpoints/step-004000 \
		--init $(RUNS)/sf-style --memory window-21:absolute --steps 150 --set probe_every=50
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/longlive-style --teacher $(RUNS)/teacher-b/checkpoints/step-004000 \
		--init $(RUNS)/sf-style --memory sink3-window18 --steps 150 --set probe_every=50 --set dmd.teacher_context=none
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/stage2-similarity --teacher $(RUNS)/teacher-b/checkpoints/step-004000 \
		--init $(RUNS)/stage1 --memory sink3-slow12-fast6 --steps 150 --set probe_every=50
	$(TRAIN) ode-init --preset panworld --run-dir $(RUNS)/ode-init-window --teacher $(RUNS)/teacher-b/checkpoints/step-001000 \
		--memory sink3-window18 --steps 250
	$(TRAIN) stage1 --preset panworld --run-dir $(RUNS)/ll-stage1 --teacher $(RUNS)/teacher-b/checkpoints/step-003000 \
		--init $(RUNS)/ode-init-window --memory sink3-window18 --steps 300 --set probe_every=50
	$(TRAIN) stage2 --preset panworld --run-dir $(RUNS)/longlive-style-fair --teacher $(RUNS)/teacher-b/checkpoints/step-004000 \
		--init $(RUNS)/ll-stage1 --memory sink3-window18 --steps 150 --set probe_every=50 --set dmd.teacher_context=none

# Every row of docs/RESULTS.md's comparison: 16 eval episodes of 64 s and 8 of 128 s per model, P1 and P2; a
# report already written is kept (delete it to re-run). Entries are NAME:MODEL:MEMORY (empty: the checkpoint's).
RESULTS := docs/results/models
EVAL := $(BIN)/context-forcing eval --threads 1
SHIPPED := context_forcing/checkpoints/panworld
COMPARED := student:$(SHIPPED)/student: \
	self-forcing-style:$(SHIPPED)/self-forcing-style: \
	longlive-style:$(SHIPPED)/longlive-style: \
	infinity-rope-style:$(SHIPPED)/self-forcing-style:sink3-window18 \
	student_similarity0.95:$(SHIPPED)/student:sink3-slow12-fast6:similarity0.95 \
	student_sink3-window18:$(SHIPPED)/student:sink3-window18 \
	student_uniform8:$(SHIPPED)/student:sink3-slow12-fast6:uniform8 \
	student_uniform16:$(SHIPPED)/student:sink3-slow12-fast6:uniform16 \
	ode-init16c:$(RUNS)/ode-init16c: \
	stage2-similarity16c-g1:$(RUNS)/stage2-similarity16c-g1: \
	stage2-16c-g1-u8:$(RUNS)/stage2-16c-g1-u8: \
	stage1:$(RUNS)/stage1-16b: \
	ode-init16b:$(RUNS)/ode-init16b: \
	stage2-similarity:$(RUNS)/stage2-similarity16b: \
	stage2-long16:$(RUNS)/stage2-long16: \
	stage2-g1:$(RUNS)/stage2-g1: \
	stage2-g2.5:$(RUNS)/stage2-g2.5: \
	stage2-g1-150:$(RUNS)/stage2-g1-150: \
	stage2-g1-noctx:$(RUNS)/stage2-g1-noctx: \
	stage1-16c-g1:$(RUNS)/stage1-16c-g1: \
	stage2-16c-g1-direct:$(RUNS)/stage2-16c-g1-direct: \
	stage2-16c-g1:$(RUNS)/stage2-16c-g1:
# the previous set (DMD at guidance 4 / 6, shipped until commit a46feb7): its run directories (make
# train-panworld-all; its reports were measured on the float16 exports, these run in float32)
COMPARED_G46 := student:$(RUNS)/stage2-16b: \
	self-forcing-style:$(RUNS)/sf-style16c-b: \
	longlive-style:$(RUNS)/longlive-style16c: \
	infinity-rope-style:$(RUNS)/sf-style16c-b:sink3-window18 \
	student_similarity0.95:$(RUNS)/stage2-16b:sink3-slow12-fast6:similarity0.95 \
	student_sink3-window18:$(RUNS)/stage2-16b:sink3-window18 \
	student_uniform8:$(RUNS)/stage2-16b:sink3-slow12-fast6:uniform8 \
	student_uniform16:$(RUNS)/stage2-16b:sink3-slow12-fast6:uniform16
# the first line's models are no longer shipped: their run directories (make train-panworld-8tok)
COMPARED_8TOK := student:$(RUNS)/stage2: \
	self-forcing-style:$(RUNS)/sf-style-b: \
	longlive-style:$(RUNS)/longlive-style: \
	infinity-rope-style:$(RUNS)/sf-style-b:sink3-window18 \
	stage1:$(RUNS)/stage1: \
	stage2-similarity:$(RUNS)/stage2-similarity: \
	longlive-style-fair:$(RUNS)/longlive-style-fair: \
	student_similarity0.95:$(RUNS)/stage2:sink3-slow12-fast6:similarity0.95 \
	student_sink3-window18:$(RUNS)/stage2:sink3-window18
# $(call evaluate,ENTRIES,REPORT_DIR): 16 episodes of 64 s and 8 of 128 s per entry, reports kept if present
define evaluate
	@for entry in $(1); do \
		name=$${entry%%:*}; rest=$${entry#*:}; model=$${rest%%:*}; memory=$${rest#*:}; \
		flag=$${memory:+--memory $$memory}; \
		test -f $(2)/$${name}_64s.json || $(EVAL) --model $$model $$flag --episodes 16 --seconds 64 \
			--report $(2)/$${name}_64s.json || exit 1; \
		test -f $(2)/$${name}_128s.json || $(EVAL) --model $$model $$flag --episodes 8 --seconds 128 \
			--report $(2)/$${name}_128s.json || exit 1; \
	done
endef
eval-panworld-all: setup
	$(call evaluate,$(COMPARED),$(RESULTS))
eval-panworld-g46: setup
	$(call evaluate,$(COMPARED_G46),$(RESULTS)/g46)
eval-panworld-8tok: setup
	$(call evaluate,$(COMPARED_8TOK),$(RESULTS)/8tok)

# docs/RESULTS.md's comparison and ablation tables and revisit plots, from the committed reports (no model runs).
TABLE := $(BIN)/context-forcing table
REFS := ground-truth oracle_sink3-slow12-fast6_uniform4 oracle_sink3-slow12-fast6 oracle_sink3-window18 \
	oracle_window-21 chance
BASELINES := self-forcing-style infinity-rope-style longlive-style student
ABLATIONS := student student_similarity0.95 student_sink3-window18 stage2-similarity16c-g1 stage2-16c-g1-direct \
	stage1-16c-g1 ode-init16c
DRIFT_ROWS := g46/student g46/student_uniform8 g46/student_uniform16 stage2-long16 stage2-g2.5 stage2-g1 \
	stage2-g1-150 stage2-g1-noctx stage2-16c-g1-direct stage2-16c-g1
ABLATIONS_G46 := g46/student g46/student_similarity0.95 g46/student_sink3-window18 stage2-similarity stage1 ode-init16b
ABLATIONS_8TOK := student student_similarity0.95 student_sink3-window18 stage2-similarity stage1
results-panworld: setup
	$(TABLE) $(REFS:%=docs/results/%.json) $(BASELINES:%=$(RESULTS)/%_64s.json) \
		--out $(RESULTS)/comparison_64s.md --plot docs/images/comparison_revisits_64s.png
	$(TABLE) $(REFS:%=docs/results/128s/%.json) $(BASELINES:%=$(RESULTS)/%_128s.json) \
		--out $(RESULTS)/comparison_128s.md --plot docs/images/comparison_revisits_128s.png
	$(TABLE) $(ABLATIONS:%=$(RESULTS)/%_64s.json) --out $(RESULTS)/ablations_64s.md
	$(TABLE) $(DRIFT_ROWS:%=$(RESULTS)/%_64s.json) --out $(RESULTS)/drift_64s.md
	$(TABLE) $(DRIFT_ROWS:%=$(RESULTS)/%_128s.json) --out $(RESULTS)/drift_128s.md
	$(TABLE) $(REFS:%=docs/results/%.json) $(BASELINES:%=$(RESULTS)/g46/%_64s.json) \
		--out $(RESULTS)/g46/comparison_64s.md --plot docs/images/g46/comparison_revisits_64s.png
	$(TABLE) $(REFS:%=docs/results/128s/%.json) $(BASELINES:%=$(RESULTS)/g46/%_128s.json) \
		--out $(RESULTS)/g46/comparison_128s.md --plot docs/images/g46/comparison_revisits_128s.png
	$(TABLE) $(ABLATIONS_G46:%=$(RESULTS)/%_64s.json) --out $(RESULTS)/g46/ablations_64s.md
	$(TABLE) $(REFS:%=docs/results/%.json) $(BASELINES:%=$(RESULTS)/8tok/%_64s.json) \
		--out $(RESULTS)/8tok/comparison_64s.md --plot docs/images/8tok/comparison_revisits_64s.png
	$(TABLE) $(REFS:%=docs/results/128s/%.json) $(BASELINES:%=$(RESULTS)/8tok/%_128s.json) \
		--out $(RESULTS)/8tok/comparison_128s.md --plot docs/images/8tok/comparison_revisits_128s.png
	$(TABLE) $(ABLATIONS_8TOK:%=$(RESULTS)/8tok/%_64s.json) --out $(RESULTS)/8tok/ablations_64s.md

# Copy the trained models into the package (float16 storage) for shipping; the model cards are kept.
ship-panworld: setup
	$(BIN)/python -c "from context_forcing.model.shipped import export_checkpoint as e; \
		e('$(TEACHER16)', 'context_forcing/checkpoints/panworld/teacher'); \
		e('$(RUNS)/stage2-16c-g1', 'context_forcing/checkpoints/panworld/student'); \
		e('$(RUNS)/sf-style16c-g1-b', 'context_forcing/checkpoints/panworld/self-forcing-style'); \
		e('$(RUNS)/longlive-style16c-g1', 'context_forcing/checkpoints/panworld/longlive-style')"

clean:
	rm -rf $(VENV) demo
