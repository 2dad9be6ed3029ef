# One command per task. `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The real dataset for the benchmarks (the tests use tests/data): FRUITS360_DIR, or this.
SHARED ?= $(or $(FRUITS360_DIR),../shared/data/fruits360)
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export TF_CPP_MIN_LOG_LEVEL := 2
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: help install test lint format demo bench bench-refresh bench-service bench-fit bench-search bench-scale bench-stages compare robustness image-test clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# The wheels are not kept a second time in ~/.cache/pip (~0.5 GB beside the 3.4 GB venv); a CI
# machine once ran out of disk while installing.
$(STAMP): export PIP_NO_CACHE_DIR := 1
# Both locks: the runtime one (all the image gets) and the test and lint tools.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade "pip>=24"
	$(VENV)/bin/pip install -q -r requirements.lock -r requirements-dev.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

install: $(STAMP) ## create .venv with both locks (runtime + test tools) and the project
	@scripts/check-java.sh

test: install lint ## install, lint, then run the whole test suite
	scripts/ensure-chromium.sh
	$(PY) -m pytest

lint: install ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## apply ruff's formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: install ## job on the bundled sample -> service -> classify a photo
	@$(PY) scripts/demo.py

bench: install ## featurizer vs Spark featurize stage, fp32 and bf16 (uses ../shared/data)
	$(PY) -m benchmarks.featurize --data $(SHARED)
	$(PY) -m benchmarks.refresh --data $(SHARED)

bench-refresh: install ## full job run vs --incremental refresh with 5% new photos (uses ../shared/data)
	$(PY) -m benchmarks.refresh --data $(SHARED)

# SERVICE_BUNDLE=DIR serves an existing bundle instead of building one.
bench-service: install ## load the real service (uvicorn) at concurrency 1 and 16 vs the bare featurizer
	$(PY) -m benchmarks.service_load --data $(SHARED) $(if $(SERVICE_BUNDLE),--bundle $(SERVICE_BUNDLE))

bench-fit: install ## scaler+PCA fit at 6k/30k/90k x 2048 rows: seconds, peak driver memory, vs Spark ML
	$(PY) -m benchmarks.fit --data $(SHARED)

# The bundle whose real rows bench-search grows to 100k and 1M (a job's output; `make demo` writes this one).
BUNDLE ?= $(wildcard build/demo-artifacts)

bench-search: install ## exact vs indexed search at 100k/1M rows grown from BUNDLE's rows: latency, recall, RSS
	$(PY) -m benchmarks.search --data $(SHARED) $(if $(BUNDLE),--bundle $(BUNDLE))

# bench-scale: SCALE_ARGS="--photos 3000" for a shorter run, "--data DIR" for other photos.
bench-scale: install ## default job end to end on 67,692 photos (jittered copies of SHARED) vs the bare model's floor
	$(PY) -m benchmarks.scale --data $(SHARED) $(SCALE_ARGS)

bench-stages: install ## ms per photo: decode, framing, a view, each model in fp32/bf16, the projection
	$(PY) -m benchmarks.stages --data $(SHARED)

compare: install ## pixels:20 vs resnet50 (fp32, bf16) on ../shared/data (Training -> Test) -> docs/compare.md
	$(PY) -m benchmarks.compare --data $(SHARED) --markdown docs/compare.md

robustness: install ## phone-photo conditions over HTTP on ../shared/data Test -> docs/robustness.md (+ PNGs)
	$(PY) -m benchmarks.robustness --data $(SHARED) $(ROBUSTNESS_ARGS)

image-test: install ## build the image offline (buildah, debootstrap base, wheelhouse), serve + classify as non-root; root, slow
	scripts/image-test.sh

clean: ## remove generated outputs (not the venv)
	rm -rf build out artifacts test-artifacts spark-warehouse .pytest_cache
