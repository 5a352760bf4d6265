#!/usr/bin/env bash
# The whole GPU check in one command, for one short slot on a bare machine with no network
# (PERFORMANCE.md, "A GPU slot is short": about 8 minutes from a fresh copy on one H100).
# Steps, in order (each under `timeout`, its log in $OUT/NAME.log):
#   preflight       nvcc/CUDA_HOME, ninja, setuptools, torch.cuda, triton, free disk; the plan
#   build           FORCE_CUDA=1, all cores, --no-deps --no-index (skipped when the preflight says
#                   it cannot work; with setuptools < 77 pyproject's license is written as a table
#                   for the build only)
#   backends        msgen.ops.backend_report(); if msgen.kernels cannot be imported (no install),
#                   the link msgen/kernels -> ../kernels stands in for the install's package mapping
#                   and PYTHONPATH holds the checkout, so the Triton tests and benchmarks still run
#   cuda_tests      every cuda-marked test of both ops, the int64 and chunked-backward ones
#                   included, no -x (every failure is listed)
#   resources       the CUDA kernels' registers, stack and spills (tests/test_cuda_resources.py)
#   fusion_bench    triton vs the eager reference, every PERFORMANCE.md fusion shape, fp32 and bf16
#   warp_bench      extension vs the strongest peer vs the reference, every warp shape
#   step_bench      the training step, market case, fast vs reference ops
#   fusion_compile  triton vs torch.compile of the reference, F+B first
#   warp_compile    extension vs torch.compile of the peer, only with time left
#   tables          the ratio tables of every case measured so far -> $OUT/tables.md (always)
# Benchmarks time CUDA events over many calls with the L2 flushed (benchmarks/timing.py) and
# append each case to $OUT/results.jsonl as soon as it is measured; $OUT/summary.txt says how each
# step ended and is written as they end, so a run stopped anywhere leaves its results and tables.
# A step gets at most its cap and leaves what the steps after it need (`step NAME CAP KEEP ...`).
# The exit status is 1 when a step failed (on the GPU a step stopped at its time limit does not
# count; in the dry run it does, and so does a step skipped for want of time).
#   bash benchmarks/run_gpu.sh             # on the GPU machine (OUT defaults to ./gpu-out)
#   bash benchmarks/run_gpu.sh --dry-run   # on a CPU: the same steps, no build, bodies at tiny shapes
#   bash benchmarks/run_gpu.sh --plan      # print the steps and their commands, run nothing
#                                          # (with --dry-run: the dry run's steps)
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=run
PLAN_ONLY=0
for arg in "$@"; do
  case $arg in
    --dry-run) MODE=dry ;;
    --plan) PLAN_ONLY=1 ;;
    *) echo "usage: bash benchmarks/run_gpu.sh [--dry-run] [--plan]" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$PWD/gpu-out}
# The caps are sized for the GPU machine (16 idle cores); a dry run on a shared 2-core CPU, where
# importing torch alone can take a minute, is bounded by its whole budget only.
if [ "$MODE" = dry ]; then BUDGET=${MSGEN_GPU_BUDGET_S:-1800}; else BUDGET=${MSGEN_GPU_BUDGET_S:-480}; fi
START=$(date +%s)
# A bare machine may have python3 only.
PY=${PYTHON:-$(command -v python || command -v python3)}
export PYTHONUNBUFFERED=1 MSGEN_BENCH_RESULTS="$OUT/results.jsonl"
FAILED=0
LINKED_KERNELS=0
SHIMMED_LICENSE=0

if [ "$PLAN_ONLY" = 0 ]; then
  mkdir -p "$OUT"
  : > "$OUT/summary.txt"
  : > "$OUT/results.jsonl"
fi

cleanup() {
  # Leave the checkout as it was: the build's pyproject, the stand-in link.
  [ "$SHIMMED_LICENSE" -eq 1 ] && cp "$OUT/pyproject.toml.orig" pyproject.toml
  [ "$LINKED_KERNELS" -eq 1 ] && rm -f msgen/kernels
  return 0
}
trap cleanup EXIT

note() {
  if [ "$PLAN_ONLY" = 1 ]; then echo "# $*"; else echo "$*" | tee -a "$OUT/summary.txt"; fi
}

tables() {
  "$PY" benchmarks/tables.py "$OUT/results.jsonl" > "$OUT/tables.md" 2>&1
}

# step NAME CAP KEEP CMD...: run CMD for at most CAP seconds, leaving KEEP seconds of the budget to
# the steps after it; log to $OUT/NAME.log; record how it ended in $OUT/summary.txt.
step() {
  local name=$1 cap=$2 keep=$3
  shift 3
  [ "$MODE" = dry ] && cap=$BUDGET keep=0
  if [ "$PLAN_ONLY" = 1 ]; then
    echo "step $name cap=${cap}s keep=${keep}s: $(printf '%q ' "$@")"
    return 0
  fi
  local left=$(( BUDGET - ($(date +%s) - START) - keep ))
  local limit=$(( cap < left ? cap : left ))
  if [ "$limit" -le 5 ]; then
    note "$name: skipped, ${left}s of the budget left for it"
    [ "$MODE" = dry ] && FAILED=$(( FAILED + 1 ))  # a dry run must show every step working
    return 0
  fi
  local t0
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local status="rc=$rc"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status="stopped at its ${limit}s limit"
    [ "$MODE" = dry ] && FAILED=$(( FAILED + 1 ))
  elif [ $rc -ne 0 ]; then
    FAILED=$(( FAILED + 1 ))
  fi
  note "$name: $status in $(( $(date +%s) - t0 ))s; $(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1)"
  return 0
}

# ---- preflight -----------------------------------------------------------------------------
PREFLIGHT_ARGS=(--env "$OUT/preflight.env")
[ "$MODE" = dry ] && PREFLIGHT_ARGS+=(--dry-run)
step preflight 30 420 "$PY" benchmarks/gpu_preflight.py "${PREFLIGHT_ARGS[@]}"
PLAN_BUILD=none PLAN_LICENSE_SHIM=0 PLAN_GPU=0 PLAN_TRITON=0 PLAN_SKIPS=""
if [ "$PLAN_ONLY" = 0 ]; then
  {
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    cat "$OUT/preflight.log"
  } > "$OUT/environment.txt" 2>&1
  # shellcheck disable=SC1091
  [ -f "$OUT/preflight.env" ] && . "$OUT/preflight.env"
  [ -n "$PLAN_SKIPS" ] && note "preflight plan, will skip: $PLAN_SKIPS"
fi

# ---- build ---------------------------------------------------------------------------------
if [ "$MODE" = dry ]; then
  # CPU: the extension the README's install built.
  step build 120 0 "$PY" -c "import torch, msgen._C; print(msgen._C.build_info())"
elif [ "$PLAN_BUILD" = cuda ] || [ "$PLAN_ONLY" = 1 ]; then
  if [ "$PLAN_LICENSE_SHIM" = 1 ]; then
    cp pyproject.toml "$OUT/pyproject.toml.orig" && SHIMMED_LICENSE=1
    sed -i 's/^license = "MIT"$/license = {text = "MIT"}/' pyproject.toml
  fi
  step build 240 230 env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="$(nproc)" \
    "$PY" -m pip install --no-build-isolation --no-deps --no-index -v -e .
  if [ "$SHIMMED_LICENSE" = 1 ]; then cp "$OUT/pyproject.toml.orig" pyproject.toml; SHIMMED_LICENSE=0; fi
else
  note "build: skipped by the preflight (see preflight.log)"
fi

# ---- the ops importable, whatever the build did ---------------------------------------------
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "$PLAN_ONLY" = 0 ] && ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('msgen.kernels.fused_attention') is None)" 2>/dev/null; then
  if [ ! -e msgen/kernels ]; then
    ln -s ../kernels msgen/kernels && LINKED_KERNELS=1
    note "msgen.kernels: not installed; linked msgen/kernels -> ../kernels for this run (removed at exit)"
  fi
fi
step backends 30 220 "$PY" -c "import msgen.ops as o, msgen.kernels.fused_attention; print(o.backend_report())"

# ---- tests ---------------------------------------------------------------------------------
step cuda_tests 150 150 "$PY" -m pytest tests/test_part_warp.py tests/test_fused_attention.py -m cuda \
  -v -rfEs -p no:cacheprovider --durations=10
REQUIRE_BUILD=0
[ "$PLAN_BUILD" = cuda ] && REQUIRE_BUILD=1
step resources 30 150 env MSGEN_REQUIRE_CUDA_BUILD=$REQUIRE_BUILD "$PY" -m pytest tests/test_cuda_resources.py \
  -q -s -p no:cacheprovider

# ---- benchmarks: the cheap comparisons first, torch.compile last -----------------------------
if [ "$MODE" = dry ]; then BENCH=(--benchmark-disable); else BENCH=(--benchmark-only); fi
PYTEST_BENCH=("$PY" -m pytest -q -s -p no:cacheprovider "${BENCH[@]}")
step fusion_bench 90 100 env MSGEN_BENCH_FUSION_IMPLS=triton,reference "${PYTEST_BENCH[@]}" \
  benchmarks/bench_fused_attention.py
[ "$PLAN_ONLY" = 0 ] && tables
step warp_bench 80 60 env MSGEN_BENCH_WARP_IMPLS=extension,peer,reference "${PYTEST_BENCH[@]}" \
  benchmarks/bench_part_warp.py
[ "$PLAN_ONLY" = 0 ] && tables
step step_bench 90 20 "${PYTEST_BENCH[@]}" benchmarks/bench_train_step.py
[ "$PLAN_ONLY" = 0 ] && tables
step fusion_compile 150 0 env MSGEN_BENCH_FUSION_IMPLS=triton,compile MSGEN_BENCH_DIRECTIONS=F+B,F \
  "${PYTEST_BENCH[@]}" benchmarks/bench_fused_attention.py
[ "$PLAN_ONLY" = 0 ] && tables
step warp_compile 120 0 env MSGEN_BENCH_WARP_IMPLS="extension,compiled peer" "${PYTEST_BENCH[@]}" \
  benchmarks/bench_part_warp.py

# ---- the tables, always --------------------------------------------------------------------
if [ "$PLAN_ONLY" = 1 ]; then
  echo "tables: $PY benchmarks/tables.py \$OUT/results.jsonl > \$OUT/tables.md (after each benchmark step and at the end)"
  exit 0
fi
tables
note "tables: $(head -n 1 "$OUT/tables.md") -> $OUT/tables.md"
note "total $(( $(date +%s) - START ))s of ${BUDGET}s, $FAILED step(s) failed; results in $OUT/results.jsonl"
[ "$FAILED" -eq 0 ]
