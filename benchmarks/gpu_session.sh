#!/usr/bin/env bash
# One GPU visit (see the device tool): install carried wheels, build eyefast with CUDA for this
# machine, run the whole pytest suite on CUDA, the CUDA kernel tests under compute-sanitizer
# (memcheck; racecheck for the shared-memory accumulation kernels), and the benchmark runner on
# CUDA with JSON output. Everything lands in $OUT (or ./gpu_out when run by hand).
#
#   bash benchmarks/gpu_session.sh            # from the repository root, on the GPU machine
#   (carry .whl: nerfacc, trimesh, xatlas, PyMCubes wheels for the machine's Python)
set -uo pipefail
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
STAGE_TIMEOUT=${STAGE_TIMEOUT:-240}
PYTEST_ARGS=${PYTEST_ARGS:-tests}
SANITIZE_K=${SANITIZE_K:-cuda and not gradcheck and not opcheck and not compile and not fuzz}
BENCH_ARGS=${BENCH_ARGS:-}
status=0
step() { echo; echo "=== $* ($(date +%T))"; }

step "environment"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch,sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nvcc --version | tail -2
} 2>&1 | tee "$OUT/env.txt"

step "install carried wheels"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

step "build eyefast._C with CUDA"
# This image sets CC/CXX to a g++ wrapper that links libstdc++ statically into the extension;
# a second libstdc++ inside _C.so segfaults in std::ostream (c10::str) at the first formatted
# error message. Build with the system compiler, which links the shared libstdc++ torch uses.
if [ -x /usr/bin/g++ ]; then export CC=/usr/bin/gcc CXX=/usr/bin/g++; fi
cap=$(python3 -c "import torch; m,n=torch.cuda.get_device_capability(); print(f'{m}.{n}')")
if ! EYEFAST_CUDA=1 TORCH_CUDA_ARCH_LIST="$cap" MAX_JOBS=16 timeout "$STAGE_TIMEOUT" \
     python3 setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
python3 -c "import torch, eyefast._C as c; print('WITH_CUDA', c.WITH_CUDA)"
ldd eyefast/_C*.so | grep -q "libstdc++" || echo "WARNING: _C.so does not link the shared libstdc++ (static copy?)"

step "pytest (whole suite, CUDA cases included)"
timeout "$STAGE_TIMEOUT" python3 -m pytest -q -p no:cacheprovider $PYTEST_ARGS -rs 2>&1 | tee "$OUT/pytest.log" | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1

step "compute-sanitizer memcheck (CUDA kernel tests)"
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$STAGE_TIMEOUT" compute-sanitizer --tool memcheck --leak-check no \
  --target-processes all --error-exitcode 9 \
  python3 -m pytest -q -p no:cacheprovider tests/test_ray_sphere.py tests/test_refract.py tests/test_c_api.py \
  tests/test_volrend.py tests/test_occupancy.py tests/test_raster.py -k "$SANITIZE_K" > "$OUT/sanitizer_memcheck.log" 2>&1
rc=$?; tail -6 "$OUT/sanitizer_memcheck.log"; echo "memcheck exit $rc"; [ $rc = 0 ] || status=1

step "compute-sanitizer racecheck (shared-memory accumulation in the backward kernels)"
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$STAGE_TIMEOUT" compute-sanitizer --tool racecheck \
  --target-processes all --error-exitcode 9 \
  python3 -m pytest -q -p no:cacheprovider tests/test_ray_sphere.py tests/test_volrend.py -k "cuda and (gradients_match_reference or weight)" \
  > "$OUT/sanitizer_racecheck.log" 2>&1
rc=$?; tail -6 "$OUT/sanitizer_racecheck.log"; echo "racecheck exit $rc"; [ $rc = 0 ] || status=1

step "nerfacc's CUDA extension (JIT build, for the comparisons)"
MAX_JOBS=16 timeout "$STAGE_TIMEOUT" python3 -c "
import torch, nerfacc
from nerfacc.cuda import _backend  # builds nerfacc's kernels just in time
print('nerfacc', nerfacc.__version__, 'kernels ready' if _backend._C is not None else 'kernels MISSING')
" 2>&1 | tail -3

step "benchmarks on CUDA"
timeout "$STAGE_TIMEOUT" python3 -m benchmarks.run --device cuda --json "$OUT/bench_cuda.json" $BENCH_ARGS 2>&1 \
  | tee "$OUT/bench_cuda.txt"

step "done (status $status)"
exit $status
