#!/usr/bin/env bash
# The four variants of the paper's Table 2 (avg-nod, avg, att2d, full) trained with one budget on
# the built-in synthetic dataset, on a CPU, then scored at M = 1, 2, 3, 5 on held-out persons with
# msgen.evaluate. Results: runs/ablation-cpu/<variant>/eval/evaluation.md.
#   bash docs/experiments/ablation_cpu.sh [STEPS]     (default 3000 steps per variant)
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-3000}
OUT=${OUT:-runs/ablation-cpu}
for variant in full avg att2d avg-nod; do
  python -m msgen.train --steps "$STEPS" --model.generator.variant "$variant" --num-sources 2 \
    --eval-every 1000 --sample-every 1000 --out "$OUT/$variant"
  python -m msgen.evaluate --checkpoint "$OUT/$variant/checkpoints/step-$(printf %08d "$STEPS").pt" \
    --sources 1 2 3 5 --max-tuples 200 --out "$OUT/$variant/eval"
done
