# SQLEnv developer commands. Quick start: `make serve` and `make test`.
# Each target sets up what it needs: the virtualenv, the package and the data.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned, so nothing pulls a CUDA build on CPU machines.
TORCH_SPEC ?= torch==2.13.0
# Where Spider comes from: a directory, a .zip or a URL (see scripts/build_data.py).
SPIDER_SOURCE ?=
PORT ?= 8000

.PHONY: help venv venv-dev data serve test test-fast lint format clean

help:
	@echo "make serve  - set up and start the server on the Spider data (port $(PORT))"
	@echo "make test   - set up and run the whole test suite"
	@echo "make data   - fetch Spider, verify it and build the question bank"

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
	SPIDER_SOURCE="$(SPIDER_SOURCE)" $(PY) -m sql_env.scripts.build_data

serve: data
	PORT=$(PORT) $(VENV)/bin/server

test: $(VENV)/.dev data
	$(PY) -m pytest

test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) data/databases data/questions .pytest_cache .ruff_cache

# --- server/space targets (helper) ---
# The Hugging Face Space tree, staged by OpenEnv's own push code (scripts/stage_space.py).
SPACE_DIR ?= build/space
REPO_ID ?=
SMOKE := ../shared/container/container-smoke.sh

.PHONY: stage push container-test setup-browser

stage: $(VENV)/.runtime data
	$(PY) -m sql_env.scripts.stage_space --out $(SPACE_DIR)

push: $(VENV)/.runtime data
	$(PY) -m sql_env.scripts.stage_space --out $(SPACE_DIR) --push $(if $(REPO_ID),--repo-id $(REPO_ID))

# Builds the staged tree (what Hugging Face builds) with podman, serves it as uid 1000
# on port 7860, plays one episode through SQLEnvClient, then checks the SIGTERM stop.
container-test: stage
	SMOKE_PORT=7860 \
	SMOKE_HOOK='$(abspath $(PY)) $(abspath tests/e2e/play_episode.py) "$$SMOKE_URL" --data-dir $(abspath $(SPACE_DIR))/data' \
	bash $(SMOKE) $(SPACE_DIR) $(SPACE_DIR)/Dockerfile

# Headless Chromium + chromedriver for tests/test_web.py (Debian packages; no download).
setup-browser:
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }
# --- end server/space ---
