# eyefast: the two commands of the README.
#   make demo   set up .venv, build, make the synthetic capture, train, export, evaluate
#   make test   set up .venv, build, run pytest, the C++ tests (ctest) and the nvcc compile check
#   make view / make turntable   after make demo: the demo head in the browser / in a video
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; } || true)
# the GPUs the nvcc check builds for: the wheel's list (eyefast/core/_build.py: Turing to Hopper, PTX of
# Hopper for what comes after, and sm_120 where the toolkit has it)
CUDA_ARCHS ?= 75-real;80-real;86-real;89-real;90$(if $(NVCC),$(shell $(NVCC) --list-gpu-arch 2>/dev/null | grep -q compute_120 && echo ';120-real'))
DEMO_DATA ?= data/demo
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# ccache, when installed, through its compiler wrappers (Debian/Ubuntu/Fedora/Homebrew folders)
CCACHE_LIBDIR := $(firstword $(wildcard /usr/lib/ccache /usr/lib64/ccache /usr/local/opt/ccache/libexec))
export PATH := $(CURDIR)/$(VENV)/bin:$(if $(CCACHE_LIBDIR),$(CCACHE_LIBDIR):)$(PATH)

.PHONY: help venv build tools test pytest ctest cuda-check demo view turntable bench eye-models demo-seeds camera-refine wheel clean

help:
	@echo "make demo   - set up, build, synthesise the demo capture, train, export, evaluate"
	@echo "make test   - set up, build, pytest + ctest + nvcc compile check"
	@echo "make view   - after make demo: the demo head in the browser (http://localhost:8080)"
	@echo "make turntable - after make demo: workspace/synth_demo/turntable.mp4, the head turning under a moving light"
	@echo "make bench  - benchmark table (eyefast bench)"
	@echo "make wheel  - dist/eyefast-*.whl with eyefast._C prebuilt for torch==$(TORCH_VERSION)"
	@echo "make eye-models - sphere vs refractive eye on the refractive demo capture (~15 min on 2 cores)"
	@echo "make demo-seeds - the demo trained with 5 seeds, eye centres started 0.35 r off (~15 min on 2 cores)"
	@echo "make camera-refine - the demo on true and perturbed cameras, refinement off and on (~30 min on 2 cores)"

# The virtual environment: torch pinned first (so nothing resolves another torch), then eyefast itself
# in development mode with its test, benchmark, prepare, viewer, video and report extras (their list
# lives in setup.py), without building the extension (EYEFAST_NO_EXT=1): `build` compiles it once, in place.
$(VENV)/.deps-stamp: setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q "torch==$(TORCH_VERSION)"
	EYEFAST_NO_EXT=1 $(PIP) install -q --no-build-isolation -e ".[test,bench,prepare,view,video,report]" "torch==$(TORCH_VERSION)"
	touch $@
venv: $(VENV)/.deps-stamp

# The extension, once, in place (eyefast/_C*.so), against the installed torch; objects in build/temp.*
# (ninja rebuilds only what changed; `make wheel` links the same objects).
build: venv
	MAX_JOBS=$(JOBS) $(PY) setup.py -q build_ext --inplace

# The node tools the tests use (tools/package.json, pinned): the Khronos glTF validator and playwright-core
# (drives the system Chromium to load the viewer); into tools/node_modules (git-ignored).
tools/node_modules/.stamp: tools/package.json
	@if command -v npm >/dev/null; then \
	  npm install --prefix tools --no-audit --no-fund --silent && touch $@ \
	    || echo "!!!!!!!! npm install failed: the glTF-validator and browser-viewer tests will be SKIPPED !!!!!!!!"; \
	else \
	  echo "!!!!!!!! npm not found: the glTF-validator and browser-viewer tests will be SKIPPED (install Node.js) !!!!!!!!"; \
	fi
tools: tools/node_modules/.stamp

pytest: build tools
	$(PY) -m pytest -q -p no:cacheprovider tests

ctest: venv
	cmake -S . -B build/cmake -G Ninja -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja > build-cmake.log
	cmake --build build/cmake -j $(JOBS) >> build-cmake.log
	ctest --test-dir build/cmake --output-on-failure

# Compiles (cannot run, without a GPU) every CUDA launcher for CUDA_ARCHS, torch-free.
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
	@test -f $(DEMO_DATA)/transforms.json || eyefast synth $(DEMO_DATA) --preset demo
	@# resumes (or returns at once) when a previous demo run left latest.pth
	eyefast train $(DEMO_DATA)/config.yaml --workspace workspace $$(test -f $(DEMO_RUN)/latest.pth && echo --resume)
	eyefast export --run $(DEMO_RUN) --preview
	eyefast evaluate --run $(DEMO_RUN) --json $(DEMO_RUN)/eval.json
	@echo "demo done: capture $(DEMO_DATA); run $(DEMO_RUN): checkpoints, scalars.csv, vis/*.png previews, eval.json,"
	@echo "           export/: mesh_uv.obj, textures, head.glb, preview.png (the relit head); eval/index.html"
	@echo "look at it: make view (in the browser) or make turntable (a video)"

view: build
	eyefast view --run $(DEMO_RUN)

turntable: build
	eyefast render --run $(DEMO_RUN) --orbit 24 --light orbit --out $(DEMO_RUN)/turntable.mp4

bench: build
	eyefast bench

wheel: build
	$(PY) -m build --wheel --no-isolation --outdir dist .

eye-models: build
	$(PY) -m benchmarks.eye_models --json benchmarks/results/eye_models.json

demo-seeds: build
	$(PY) -m benchmarks.demo_seeds --perturb-eyes 0.35 --json benchmarks/results/demo_seeds_perturb0.35.json

camera-refine: build
	$(PY) -m benchmarks.camera_refine --json benchmarks/results/camera_refine.json

clean:
	rm -rf build dist build-cmake*.log eyefast/_C*.so
