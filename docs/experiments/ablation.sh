#!/usr/bin/env bash
# The four variants of the paper's Table 2 (avg-nod, avg, att2d, full) trained with one budget on
# the built-in synthetic dataset (on the GPU when there is one), then scored at M = 1, 2, 3, 5 on
# held-out persons with msgen.evaluate. Results: $OUT/<variant>/eval/evaluation.md.
#   bash docs/experiments/ablation.sh [STEPS] [extra msgen.train options...]
# 800 CPU steps of the small default model gave colour blobs, not people (2026-11-24): the
# comparison is meant for a GPU budget (e.g. 50000 steps, --model.generator.width 0.5).
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPS=${1:-3000}
shift || true
OUT=${OUT:-runs/ablation}
for variant in full avg att2d avg-nod; do
  python -m msgen.train --steps "$STEPS" --model.generator.variant "$variant" --num-sources 2 \
    --eval-every 1000 --sample-every 1000 --out "$OUT/$variant" "$@"
  python -m msgen.evaluate --checkpoint "$OUT/$variant/checkpoints/step-$(printf %08d "$STEPS").pt" \
    --sources 1 2 3 5 --max-tuples 200 --out "$OUT/$variant/eval"
done
