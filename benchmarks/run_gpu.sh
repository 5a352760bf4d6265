#!/usr/bin/env bash
# One unattended GPU session: build with the CUDA kernels, run every test (the cuda-marked ones
# included) and every benchmark, and leave the logs and the ratio tables in $OUT (default ./gpu-out).
#   bash benchmarks/run_gpu.sh            # everything
#   bash benchmarks/run_gpu.sh -k fusion  # extra pytest arguments go to the benchmark run
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python -c "import torch, triton; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'triton', triton.__version__)"
} > "$OUT/environment.txt" 2>&1

pip install --no-build-isolation -e . > "$OUT/build.log" 2>&1 || { echo "build failed: $OUT/build.log"; exit 1; }
python -c "import msgen.ops as o; print(o.backend_report())" | tee "$OUT/backends.txt"

python -m pytest tests/ -q -p no:cacheprovider > "$OUT/tests.log" 2>&1
echo "tests: $(tail -n 1 "$OUT/tests.log")"

rm -f "$OUT/ratios.md"
MSGEN_BENCH_MARKDOWN="$OUT/ratios.md" python -m pytest benchmarks/ --benchmark-only -q -p no:cacheprovider \
  --benchmark-json="$OUT/benchmarks.json" "$@" > "$OUT/benchmarks.log" 2>&1
echo "benchmarks: $(tail -n 1 "$OUT/benchmarks.log")"
