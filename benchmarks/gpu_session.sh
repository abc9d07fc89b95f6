#!/usr/bin/env bash
# One GPU visit (see the device tool), within BUDGET seconds (default 560: one 10-minute call with room to
# spare): build eyefast with CUDA for this machine; the CUDA tests of the suite; the CUDA tests of every op
# under compute-sanitizer (memcheck; racecheck for the shared-memory accumulation kernels); the demo
# trained, exported and evaluated on CUDA with the eyefast command; 300 timed demo steps and the step at
# CoRA's working point (host syncs, ms per step, peak memory); the benchmark runner on CUDA (with nerfacc's
# identical samples). Stages run in that order and each gets at most STAGE_TIMEOUT seconds and what is
# left of the budget; a stage that does not fit is reported as skipped. Everything lands in $OUT (or
# ./gpu_out when run by hand); the JSON records are copied to benchmarks/results/<gpu>_*.json.
#
#   bash benchmarks/gpu_session.sh            # from the repository root, on the GPU machine
#   (carry .whl: nerfacc, trimesh, xatlas, PyMCubes, fast-simplification wheels for the machine's Python)
#   BUDGET=... STAGE_TIMEOUT=... PYTEST_K=... SANITIZE_K=... BENCH_ARGS=... override the defaults
#   DEVICE=cpu bash benchmarks/gpu_session.sh   # a dry run of the Python stages on the CPU (no build,
#                                                # no sanitizer, no nerfacc): checks the script itself
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BUDGET=${BUDGET:-560}
STAGE_TIMEOUT=${STAGE_TIMEOUT:-150}
PYTEST_K=${PYTEST_K:-cuda}
SANITIZE_K=${SANITIZE_K:-cuda and not gradcheck and not opcheck and not compile and not fuzz}
BENCH_ARGS=${BENCH_ARGS:-}
DEVICE=${DEVICE:-cuda}
END=$((SECONDS + BUDGET))
status=0
step() { echo; echo "=== $* ($(date +%T), $((END - SECONDS)) s of the budget left)"; }
# stage LIMIT CMD...: runs CMD with at most min(LIMIT, what is left of the budget) seconds
stage() {
  local limit=$1; shift
  local left=$((END - SECONDS))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then echo "SKIPPED (out of time): $*"; status=1; return 1; fi
  timeout "$limit" "$@"
}

gpu_only() { if [ "$DEVICE" = cpu ]; then echo "(dry run on the CPU: skipped)"; return 1; fi; }
# ok RC: a GPU-only stage's exit status counts unless this is a dry run (where it was skipped)
ok() { [ "$DEVICE" = cpu ] || [ "$1" = 0 ]; }

step "environment"
{
  gpu_only && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch,sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
  gpu_only && nvcc --version | tail -2
} 2>&1 | tee "$OUT/env.txt"

step "install carried wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PATH=$PWD/gpu_bin:$PATH
mkdir -p gpu_bin
printf '#!/bin/sh\nexec python3 -m eyefast "$@"\n' > gpu_bin/eyefast && chmod +x gpu_bin/eyefast

step "build eyefast._C with CUDA"
if gpu_only; then
  # This image sets CC/CXX to a g++ wrapper that links libstdc++ statically into the extension;
  # a second libstdc++ inside _C.so segfaults in std::ostream (c10::str) at the first formatted
  # error message. Build with the system compiler, which links the shared libstdc++ torch uses.
  if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++; fi
  cap=$(python3 -c "import torch; m,n=torch.cuda.get_device_capability(); print(f'{m}.{n}')")
  export EYEFAST_CUDA=1 TORCH_CUDA_ARCH_LIST="$cap" MAX_JOBS=16
  if ! stage 240 python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
  fi
  python3 -c "import torch, eyefast._C as c; print('WITH_CUDA', c.WITH_CUDA)"
  ldd eyefast/_C*.so | grep -q "libstdc++" || echo "WARNING: _C.so does not link the shared libstdc++ (static copy?)"
fi

step "pytest: the CUDA tests (-k '$PYTEST_K')"
gpu_only && stage "$STAGE_TIMEOUT" python3 -m pytest -q -p no:cacheprovider tests -k "$PYTEST_K" -m "not slow" -rs 2>&1 \
  | tee "$OUT/pytest.log" | tail -25
ok "${PIPESTATUS[0]}" || status=1

step "compute-sanitizer memcheck (the CUDA tests of every op)"
gpu_only && PYTORCH_NO_CUDA_MEMORY_CACHING=1 stage "$STAGE_TIMEOUT" compute-sanitizer --tool memcheck --leak-check no \
  --target-processes all --error-exitcode 9 \
  python3 -m pytest -q -p no:cacheprovider tests/test_ray_sphere.py tests/test_refract.py tests/test_c_api.py \
  tests/test_volrend.py tests/test_occupancy.py tests/test_raster.py tests/test_trace_eyes.py tests/test_hash_grid.py \
  tests/test_sdf_network.py tests/test_activation.py -k "$SANITIZE_K" > "$OUT/sanitizer_memcheck.log" 2>&1
rc=$?; if ! ok 1; then tail -6 "$OUT/sanitizer_memcheck.log"; echo "memcheck exit $rc"; [ $rc = 0 ] || status=1; fi

step "compute-sanitizer racecheck (shared-memory accumulation in the backward kernels)"
gpu_only && PYTORCH_NO_CUDA_MEMORY_CACHING=1 stage 60 compute-sanitizer --tool racecheck \
  --target-processes all --error-exitcode 9 \
  python3 -m pytest -q -p no:cacheprovider tests/test_ray_sphere.py tests/test_volrend.py -k "cuda and (gradients_match_reference or weight)" \
  > "$OUT/sanitizer_racecheck.log" 2>&1
rc=$?; if ! ok 1; then tail -6 "$OUT/sanitizer_racecheck.log"; echo "racecheck exit $rc"; [ $rc = 0 ] || status=1; fi

step "the demo on CUDA: eyefast synth, train (300 steps), export, evaluate"
{
  stage 60 eyefast synth "$OUT/demo" --preset demo &&
  stage 120 eyefast train "$OUT/demo/config.yaml" --device "$DEVICE" --max-steps 300 --workspace "$OUT/ws" --quiet &&
  stage 90 eyefast export --run "$OUT/ws/synth_demo" --device "$DEVICE" --uv-size 1024 --mc-res 192 --preview --quiet &&
  stage 60 eyefast evaluate --run "$OUT/ws/synth_demo" --device "$DEVICE" --json "$OUT/demo_eval_cuda.json"
} 2>&1 | tail -20
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "timed training on CUDA: 300 demo steps, then CoRA's working point (8192 rays, 300 views at 720x960)"
stage 90 python3 -m benchmarks.train_timing --device "$DEVICE" --capture "$OUT/demo" --steps 300 --warmup 20 \
  --json "$OUT/train_demo_cuda.json" 2>&1 | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1
stage 150 python3 -m benchmarks.train_timing --device "$DEVICE" --views 300 --size 720x960 --upscale 8 \
  --rays 8192 --set renderer.sample_batch_size=262144 --steps 50 --warmup 20 \
  --json "$OUT/train_cora_scale_cuda.json" 2>&1 | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "nerfacc's CUDA extension (JIT build, for the comparisons)"
gpu_only && MAX_JOBS=16 stage 90 python3 -c "
import torch, nerfacc
from nerfacc.cuda import _backend  # builds nerfacc's kernels just in time
print('nerfacc', nerfacc.__version__, 'kernels ready' if _backend._C is not None else 'kernels MISSING')
" 2>&1 | tail -3

step "benchmarks on CUDA (nerfacc with identical samples where it has a counterpart)"
stage "$STAGE_TIMEOUT" python3 -m benchmarks.run --device "$DEVICE" --json "$OUT/bench_cuda.json" $BENCH_ARGS 2>&1 \
  | tee "$OUT/bench_cuda.txt"

step "results into benchmarks/results/"
gpu=$(python3 -c "import torch; print(torch.cuda.get_device_name().lower().replace('nvidia', '').strip().replace(' ', '_') if torch.cuda.is_available() else 'dryrun_cpu')")
if [ "$DEVICE" = cpu ]; then echo "(dry run: results stay in $OUT)"; gpu=""; fi
if [ -n "$gpu" ]; then
  for f in "$OUT"/*.json; do [ -f "$f" ] && cp "$f" "benchmarks/results/${gpu}_$(basename "$f")"; done
  ls benchmarks/results/"${gpu}"_* 2>/dev/null
fi

step "done (status $status)"
exit $status
