#!/usr/bin/env bash
# One short GPU slot (PERFORMANCE.md, "A GPU slot is short"): a bare H200 with no network, torch
# 2.11 + CUDA 13 and triton 3.6 preinstalled, 15 minutes in all and 10 per command. This script
# is that one command and stops itself after MSGEN_GPU_BUDGET_S seconds (default 510, ~8.5 min):
#   1. environment        nvidia-smi, versions                                    -> environment.txt
#   2. build              FORCE_CUDA=1, all cores, no network (--no-deps)         -> build.log
#   3. CUDA tests first   the cuda-marked tests of both ops, the resource report  -> tests.log
#   4. warp benchmarks    interleaved, MSGEN_BENCH_GPU_ROUNDS rounds (default 15)  -> results.jsonl
#   5. fusion benchmarks  reference + triton for every shape, then torch.compile  -> results.jsonl
# Every step has its own time limit out of what is left; every result is appended to
# $OUT/results.jsonl the moment it is measured, and $OUT/summary.txt says how each step ended.
# The exit status is 1 when a step failed (a step stopped at its time limit does not count).
#   bash benchmarks/run_gpu.sh             # on the GPU machine (OUT defaults to ./gpu-out)
#   bash benchmarks/run_gpu.sh --dry-run   # on a CPU: same steps, no CUDA build, smoke-sized
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
: > "$OUT/summary.txt"
BUDGET=${MSGEN_GPU_BUDGET_S:-510}
START=$(date +%s)
export MSGEN_BENCH_RESULTS="$OUT/results.jsonl" MSGEN_BENCH_GPU_ROUNDS=${MSGEN_BENCH_GPU_ROUNDS:-15}
PY=${PYTHON:-python}
FAILED=0

# step NAME MAX_SECONDS CMD...: run CMD with at most MAX_SECONDS (and what the budget has left),
# log to $OUT/NAME.log, and record its exit status.
step() {
  local name=$1 cap=$2
  shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  local limit=$(( cap < left ? cap : left ))
  if [ "$limit" -le 5 ]; then
    echo "$name: skipped, budget spent" | tee -a "$OUT/summary.txt"
    return 0
  fi
  local t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  local status="rc=$rc"
  [ $rc -eq 124 ] && status="stopped at its ${limit}s limit"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && FAILED=$(( FAILED + 1 ))
  echo "$name: $status in $(( $(date +%s) - t0 ))s; $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/summary.txt"
  return 0
}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || echo "no nvidia-smi"
  $PY -c "import torch, triton; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'triton', triton.__version__)"
  nproc
} > "$OUT/environment.txt" 2>&1

if [ $DRY -eq 1 ]; then
  # CPU: the extension the README's install built; every benchmark body once at a tiny shape.
  step build 120 $PY -c "import torch, msgen._C; print(msgen._C.build_info())"
  BENCH_ARGS=(--benchmark-disable)
else
  step build 240 env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="$(nproc)" \
    $PY -m pip install --no-build-isolation --no-deps --no-index -e .
  BENCH_ARGS=()
fi
step backends 30 $PY -c "import msgen.ops as o; print(o.backend_report())"
step cuda_tests 150 $PY -m pytest tests/test_part_warp.py tests/test_fused_attention.py -m "cuda and not slow" \
  -q -x -p no:cacheprovider
step resources 30 env MSGEN_REQUIRE_CUDA_BUILD=$(( 1 - DRY )) $PY -m pytest tests/test_cuda_resources.py -q -s \
  -p no:cacheprovider
step warp_bench 150 env MSGEN_BENCH_WARP_IMPLS=extension,peer $PY -m pytest benchmarks/bench_part_warp.py -q -s \
  -p no:cacheprovider "${BENCH_ARGS[@]}"
step fusion_bench 120 env MSGEN_BENCH_FUSION_IMPLS=reference,triton $PY -m pytest benchmarks/bench_fused_attention.py \
  -q -s -p no:cacheprovider "${BENCH_ARGS[@]}"
step compile_peers 150 env MSGEN_BENCH_WARP_IMPLS="extension,compiled peer" MSGEN_BENCH_FUSION_IMPLS=compile,triton \
  $PY -m pytest benchmarks/bench_part_warp.py benchmarks/bench_fused_attention.py -k "gpu or fusion" -q -s \
  -p no:cacheprovider "${BENCH_ARGS[@]}"
echo "total $(( $(date +%s) - START ))s of ${BUDGET}s, $FAILED step(s) failed; results in $OUT/results.jsonl" \
  | tee -a "$OUT/summary.txt"
[ "$FAILED" -eq 0 ]
