# eyefast: the two commands of the README.
#   make demo   set up .venv, build, make the synthetic capture, train, export, evaluate
#   make test   set up .venv, build, run pytest, the C++ tests (ctest) and the nvcc compile check
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; } || true)
CUDA_ARCHS ?= 80;90
DEMO_DATA ?= data/demo
JOBS ?= 2
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help venv build test pytest ctest cuda-check demo bench eye-models demo-seeds clean

help:
	@echo "make demo   - set up, build, synthesise the demo capture, train, export, evaluate"
	@echo "make test   - set up, build, pytest + ctest + nvcc compile check"
	@echo "make bench  - benchmark table (python -m benchmarks.run)"
	@echo "make eye-models - sphere vs refractive eye on the refractive demo capture (~15 min on 2 cores)"
	@echo "make demo-seeds - the demo trained with 5 seeds, eye centres started 0.35 r off (~15 min on 2 cores)"

# The virtual environment, with torch pinned (a CPU build from local disk here) and the deps.
$(VENV)/.deps-stamp: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	$(PIP) install -q -r requirements.txt "torch==$(TORCH_VERSION)"
	touch $@
venv: $(VENV)/.deps-stamp

# The extension, built against the installed torch (--no-build-isolation); ninja rebuilds only
# what changed.
build: venv
	@test -f $(VENV)/.install-stamp || { $(PIP) install -q --no-build-isolation --no-deps -e . && touch $(VENV)/.install-stamp; }
	MAX_JOBS=$(JOBS) $(PY) setup.py -q build_ext --inplace

pytest: build
	$(PY) -m pytest -q -p no:cacheprovider tests

ctest: venv
	cmake -S . -B build/cmake -G Ninja -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja > build-cmake.log
	cmake --build build/cmake -j $(JOBS) >> build-cmake.log
	ctest --test-dir build/cmake --output-on-failure

# Compiles (cannot run, without a GPU) every CUDA launcher for sm_80 and sm_90, torch-free.
cuda-check: venv
	@if [ -z "$(NVCC)" ]; then \
	  echo "!!!!!!!! nvcc not found: SKIPPING the CUDA compile check (install the CUDA toolkit to run it) !!!!!!!!"; \
	else \
	  cmake -S . -B build/cmake-cuda -G Ninja -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja -DEYEFAST_CUDA=ON \
	    -DCMAKE_CUDA_COMPILER=$(NVCC) "-DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHS)" -DEYEFAST_BUILD_TESTS=OFF > build-cmake-cuda.log && \
	  cmake --build build/cmake-cuda -j $(JOBS) >> build-cmake-cuda.log && \
	  echo "nvcc compile check passed: CUDA launchers built for sm_$(CUDA_ARCHS) with $(NVCC)"; \
	fi

test: pytest ctest cuda-check

DEMO_RUN := workspace/synth_demo
demo: build
	@test -f $(DEMO_DATA)/transforms.json || $(PY) -m eyefast.synth $(DEMO_DATA) --preset demo
	@# resumes (or returns at once) when a previous demo run left latest.pth
	$(PY) -m eyefast.train $(DEMO_DATA)/config.yaml --workspace workspace \
	  $$(test -f $(DEMO_RUN)/latest.pth && echo --resume $(DEMO_RUN)/latest.pth)
	@if $(PY) -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('eyefast.export') is None)"; then \
	  $(PY) -m eyefast.export --run $(DEMO_RUN) --preview; \
	fi
	$(PY) -m eyefast.evaluate --workspace $(DEMO_RUN) --json $(DEMO_RUN)/eval.json
	@echo "demo done: capture $(DEMO_DATA); run $(DEMO_RUN) (checkpoints, scalars.csv, vis/*.png previews,"
	@echo "           eval.json$$(test -d $(DEMO_RUN)/export && echo ', export/: mesh_uv.obj, textures, head.glb'))"

bench: build
	$(PY) -m benchmarks.run

eye-models: build
	$(PY) -m benchmarks.eye_models --json benchmarks/results/eye_models.json

demo-seeds: build
	$(PY) -m benchmarks.demo_seeds --perturb-eyes 0.35 --json benchmarks/results/demo_seeds_perturb0.35.json

clean:
	rm -rf build build-cmake*.log eyefast/_C*.so $(VENV)/.install-stamp
