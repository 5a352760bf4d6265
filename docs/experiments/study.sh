#!/usr/bin/env bash
# The study of docs/RESULTS.md: the four variants of the paper's Table 2 (avg-nod, avg, att2d, full)
# trained with one budget on the synthetic set with mixed M (one M per batch from 1, 2, 3, 5), then
# scored by msgen.evaluate at M = 1, 2, 3, 5 on the same 500 held-out tuples, with the warp baseline
# and constant-image rows, 95% bootstrap intervals and paired differences, and the variants
# compared pair by pair (msgen.evaluate compare).
#
#   bash docs/experiments/study.sh                      # everything, CPU sized (3000 steps: 7 to 12 min
#                                                       # per variant on one core of CI's 2-core machine)
#   VARIANTS="full avg" bash docs/experiments/study.sh  # some variants (run two shells to use 2 cores)
#   MINUTES=20 bash docs/experiments/study.sh           # stop each training after 20 minutes (it saves
#                                                       # on SIGTERM); the next call continues it
#   STEPS=50000 EXTRA="--model.generator.width 0.5 --batch-size 16" \
#     bash docs/experiments/study.sh                    # the GPU-sized study
#
# Every call continues where the last one stopped: training with --resume auto, and a variant whose
# final checkpoint has an evaluation is not scored again. Outputs: $OUT/<variant>/ (training run,
# eval/evaluation.md and .json) and $OUT/compare-*.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/study}
STEPS=${STEPS:-3000}
VARIANTS=${VARIANTS:-"avg-nod avg att2d full"}
TUPLES=${TUPLES:-500}
MINUTES=${MINUTES:-0}
EXTRA=${EXTRA:-}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one core per run: two runs side by side on 2 cores

final() { printf '%s/%s/checkpoints/step-%08d.pt' "$OUT" "$1" "$STEPS"; }

for variant in $VARIANTS; do
  if [ ! -f "$(final "$variant")" ]; then
    limit=()
    [ "$MINUTES" != 0 ] && limit=(timeout --signal=TERM "${MINUTES}m")
    # shellcheck disable=SC2086
    "${limit[@]}" python -m msgen.train --resume auto --out "$OUT/$variant" --steps "$STEPS" \
      --model.generator.variant "$variant" --num-sources 1,2,3,5 --eval-every 1000 --sample-every 1000 \
      --data.workers 0 $EXTRA || status=$?
    if [ ! -f "$(final "$variant")" ]; then
      echo "study: $variant stopped before step $STEPS (status ${status:-0}); run the script again to continue"
      exit 0
    fi
  fi
  if [ ! -f "$OUT/$variant/eval/evaluation.json" ]; then
    python -m msgen.evaluate --checkpoint "$(final "$variant")" --sources 1 2 3 5 --max-tuples "$TUPLES" \
      --out "$OUT/$variant/eval" --no-progress
  fi
done

# Pairs that carry the claims: attention against averaging, each against no warping.
for pair in "full avg" "full att2d" "att2d avg" "avg avg-nod"; do
  set -- $pair
  if [ -f "$OUT/$1/eval/evaluation.json" ] && [ -f "$OUT/$2/eval/evaluation.json" ]; then
    python -m msgen.evaluate compare "$OUT/$1/eval/evaluation.json" "$OUT/$2/eval/evaluation.json" \
      --method model > "$OUT/compare-$1-vs-$2.md"
    echo "written: $OUT/compare-$1-vs-$2.md"
  fi
done
