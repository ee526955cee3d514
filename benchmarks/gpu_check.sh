#!/usr/bin/env bash
# The GPU check of the paper profile (issue "The paper profile on GPUs", item 5), one prepared script for one GPU,
# under 8 minutes in all: device information, the CUDA tests, then benchmarks/bench_gpu.py (renderer forward +
# backward, network inference, a paper-profile training step and a 200-step training run) with a time budget.
# Writes results/benchmarks/gpu.md, and copies it with the logs into $OUT when that is set.
#
#   bash benchmarks/gpu_check.sh                 # from the repository root (or anywhere: it cds there)
#   PYTHON=/path/to/python bash benchmarks/gpu_check.sh
#   TOTAL_S=480 TESTS_S=90 bash benchmarks/gpu_check.sh   # the time limits (seconds), defaults shown
#   BENCH_ARGS="--device cpu --quick --out /tmp/dry.md" bash benchmarks/gpu_check.sh  # extra bench_gpu.py options
#
# Needs no network: the library is put on PYTHONPATH (no pip install); the Python must already have torch with
# CUDA, numpy, scipy, pandas, matplotlib, tqdm, pillow, pyyaml and pytest (numba optional: bench_gpu.py stubs it;
# pytorch3d optional). open3d is not needed (no module it imports is loaded).
set -euo pipefail

began=$(date +%s)
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
TOTAL_S=${TOTAL_S:-480}
TESTS_S=${TESTS_S:-90}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1
LOGS=$(mktemp -d)
mkdir -p results/benchmarks
status=0

save() {                                  # copy what exists into $OUT (at most a few flat files)
    if [[ -n "${OUT:-}" ]]; then
        mkdir -p "$OUT"
        cp -f "$LOGS"/*.log "$OUT"/ 2>/dev/null || true
        [[ -f results/benchmarks/gpu.md ]] && cp -f results/benchmarks/gpu.md "$OUT"/gpu.md || true
    fi
}
trap save EXIT

echo "== device ($(date -u '+%Y-%m-%d %H:%M:%S UTC'))"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "nvidia-smi: not available"; } \
    | tee "$LOGS/device.log"
set +e
"$PYTHON" - <<'EOF' 2>&1 | tee -a "$LOGS/device.log"
import importlib, platform, sys
import torch
print("python", platform.python_version(), sys.executable)
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN",
      torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print("cuda available:", torch.cuda.is_available(),
      "|", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
try:
    import dfmvr_lib.render, dfmvr_lib.networks, dfmvr_lib.training.forward  # noqa: E401 - the benchmark's imports
    print("dfmvr_lib imports: ok; they loaded open3d:", "open3d" in sys.modules)
except Exception as error:  # noqa: BLE001
    print(f"dfmvr_lib imports: FAILED ({type(error).__name__}: {error})")
for name in ("numpy", "scipy", "numba", "pandas", "matplotlib", "tqdm", "PIL", "yaml", "pytest", "pytorch3d"):
    try:
        module = importlib.import_module(name)
        print(f"  {name:10s} {getattr(module, '__version__', '?')}")
    except Exception as error:  # noqa: BLE001
        print(f"  {name:10s} MISSING ({type(error).__name__}: {str(error)[:120]})")
EOF
(( PIPESTATUS[0] == 0 )) || echo "environment check failed (see above); bench_gpu.py stubs numba if that was it"
set -e

echo "== CUDA tests (at most ${TESTS_S} s)"
run_tests() {                             # run_tests NAME SECONDS PYTEST-ARGS...
    local name=$1 seconds=$2 rc
    shift 2
    set +e
    timeout --signal=INT --kill-after=10 "$seconds" "$PYTHON" -m pytest -q -p no:cacheprovider "$@" 2>&1 \
        | tee "$LOGS/tests_$name.log"
    rc=${PIPESTATUS[0]}
    set -e
    case $rc in
        0) echo "tests ($name): passed" ;;
        5) echo "tests ($name): none selected (rc 5)" ;;
        124|130) echo "tests ($name): stopped at ${seconds} s (rc $rc)"; status=1 ;;
        *) echo "tests ($name): FAILED (rc $rc)"; status=1 ;;
    esac
}
tests_began=$(date +%s)
if [[ -f tests/test_devices.py ]]; then       # device-parametrised tests: their CUDA cases
    run_tests devices $(( TESTS_S * 2 / 3 )) tests/test_devices.py -k cuda
else
    echo "tests/test_devices.py: not present, skipped"
fi
if [[ -f tests/test_renderer.py ]]; then      # the renderer's torch-backend and CUDA tests
    run_tests renderer $(( TESTS_S - ($(date +%s) - tests_began) > 20 ? TESTS_S - ($(date +%s) - tests_began) : 20 )) \
        tests/test_renderer.py -k "cuda or gpu or device or torch"
fi

left=$(( TOTAL_S - ($(date +%s) - began) ))
budget=$(( left - 60 ))               # interpreter start, model build, pool, the last write: about a minute
(( budget > 330 )) && budget=330
if (( budget < 60 )); then
    echo "== bench_gpu.py: only ${left} s left; skipped"; exit 1
fi
echo "== bench_gpu.py (budget ${budget} s of the ${left} s left)"
set +e
timeout --signal=INT --kill-after=15 $(( left - 10 )) "$PYTHON" benchmarks/bench_gpu.py --budget-s "$budget" \
    --out results/benchmarks/gpu.md ${BENCH_ARGS:-} 2>&1 | tee "$LOGS/bench_gpu.log"
bench_rc=${PIPESTATUS[0]}
set -e
(( bench_rc == 0 )) || { echo "bench_gpu.py: rc $bench_rc"; status=1; }
echo "== done in $(( $(date +%s) - began )) s (status $status)"
exit $status
