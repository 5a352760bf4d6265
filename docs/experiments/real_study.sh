#!/usr/bin/env bash
# The real-photo study: K-fold cross-validation over the persons of market-real (every person tested
# once, by a model that never saw them), each configuration trained per fold, scored by
# msgen.evaluate at M = 1 (every test person with 2+ images) and M = 2 (3+ images), then pooled over
# the folds by docs/experiments/real_tables.py into tables with person-level paired intervals.
#
#   bash docs/experiments/real_study.sh                        # 5 folds, configurations "paper default"
#   FOLDS=2 FOLD_LIST=0 STEPS=300 bash docs/experiments/real_study.sh   # a smoke run: fold 0 of 2
#   CONFIGS="default default-adv" bash docs/experiments/real_study.sh  # other configurations
#   MODE=curve CURVE="25 50 all" BEST=default bash docs/experiments/real_study.sh
#                                                      # learning curve: BEST at fold 0 over the number
#                                                      # of training persons (prepare --max-train-persons)
#
# Configurations (config_args below):
#   paper        the paper's model and objective (--preset market: M-GAN, VGG-19 relu1_2 NN loss,
#                lambda 0.01, lr 2e-4, adversarial weight 1) at --model.generator.width $WIDTH, from scratch
#   paper-pretrained  the same model and objective fine-tuned from its own synthetic pretraining: the
#                market preset at width $WIDTH trained $PRETRAIN_STEPS steps on the synthetic people at
#                128x64 (once, in $OUT/pretrain/market-w$WIDTH, before the folds; continued like any run)
#   default      this project's defaults (L1, copied pixels, coarser attention) fine-tuned from
#                docs/models/synthetic-full.safetensors at 128x64
#   default-adv  default with --model.loss.adversarial-weight $ADV
#   default-pw   default with the body weighted 5x (--model.loss.person-weight 4)
#   default-vgg  default with the VGG-19 relu1_2 NN loss (lambda 0.02, the synthetic comparison's)
#   default-aug  default with the tuples mirrored (probability $FLIP) and colour-jittered ($JITTER)
#   default-adv-aug  both: the adversarial term ($ADV) and the augmentations
#   adv-aug-wW   default-adv-aug at generator width W (the shipped model's is 0.125), fine-tuned from
#                the shipped model's recipe at width W (docs/RESULTS.md "The shipped model": $SYNTH_STEPS
#                steps at 64x32, M from 1, 2, 3, 5, no person weight), trained once in
#                $OUT/pretrain/synthetic-wW before the folds and exported G only like the shipped file;
#                e.g. adv-aug-w0.25 (wider), adv-aug-w0.125 (the shipped recipe rerun by this code)
#   paper-loss   the paper's objective (VGG-19 relu1_2 NN loss, lambda 0.01, adversarial weight 1,
#                lr 2e-4) on the default model fine-tuned from the synthetic one at 128x64 (the
#                market preset's 6-level, full-width generator cannot start from it)
#
# Every call continues where the last one stopped: a training with checkpoints goes on with
# --resume auto, a fold folder or evaluation that exists is not made again. MINUTES stops each
# training after that many minutes (it saves on SIGTERM); the next call continues it. Calls may run
# side by side (other folds or configurations): a run another call is working on (its lock,
# RUN.lock, is held) is skipped, not trained twice.
# Outputs: $OUT/fold<k>/data (the dataset folder), $OUT/fold<k>/<config>/ (run, eval/),
# $OUT/tables.md; with MODE=curve $OUT/curve/<n>/ and $OUT/curve.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/data/market-real}
OUT=${OUT:-runs/real-study}
FOLDS=${FOLDS:-5}
FOLD_LIST=${FOLD_LIST:-$(seq -s ' ' 0 $((FOLDS - 1)))}
SEED=${SEED:-0}
STEPS=${STEPS:-1500}
CONFIGS=${CONFIGS:-"paper default"}
WIDTH=${WIDTH:-0.25}
ADV=${ADV:-1}
FLIP=${FLIP:-0.5}
JITTER=${JITTER:-0.2}
MAX_TUPLES=${MAX_TUPLES:-12000}
MINUTES=${MINUTES:-0}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-500}
SYNTH_STEPS=${SYNTH_STEPS:-3000}
MODE=${MODE:-folds}
CURVE=${CURVE:-"25 50 all"}
BEST=${BEST:-default}
EXTRA=${EXTRA:-}
SHIPPED=docs/models/synthetic-full.safetensors
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Other VGG-19 weights than the relu1_2 layers msgen ships: VGG=PATH (a torchvision-keyed state dict)
[ -n "${VGG:-}" ] && export MSGEN_VGG19_WEIGHTS=$VGG

config_args() {  # the options of a new run of configuration $1
  # The default configurations: fine-tuned from the synthetic model at 128x64, M = 1 and 2.
  local fine="--init-from $SHIPPED --model.generator.image-size 128,64 --num-sources 1,2"
  local aug="--data.flip $FLIP --data.color-jitter $JITTER"
  case $1 in
    paper) echo "--preset market --model.generator.width $WIDTH --num-sources 1,2" ;;
    default) echo "$fine" ;;
    default-adv) echo "$fine --model.loss.adversarial-weight $ADV" ;;
    default-pw) echo "$fine --model.loss.person-weight 4" ;;
    default-aug) echo "$fine $aug" ;;
    default-adv-aug) echo "$fine --model.loss.adversarial-weight $ADV $aug" ;;
    adv-aug-w*) echo "${fine/"$SHIPPED"/"$(synthetic_model "$1")"} --model.loss.adversarial-weight $ADV $aug" ;;
    default-vgg) echo "$fine --model.loss.features vgg19 --model.loss.lambda-nn 0.02" ;;
    paper-loss) echo "$fine --model.loss.features vgg19 --model.loss.lambda-nn 0.01 --model.loss.adversarial-weight 1 --lr 2e-4" ;;
    paper-pretrained) echo "--init-from $(final "$PRETRAINED" "$PRETRAIN_STEPS")" ;;  # model, loss, lr: the checkpoint's
    *) echo "real_study: unknown configuration $1 (paper, paper-pretrained, default, default-adv, default-pw, default-aug, default-adv-aug, adv-aug-wW, default-vgg, paper-loss)" >&2; exit 2 ;;
  esac
}

final() { printf '%s/checkpoints/step-%08d.pt' "$1" "${2:-$STEPS}"; }
PRETRAINED=$OUT/pretrain/market-w$WIDTH
synthetic_run() { echo "$OUT/pretrain/synthetic-w${1#adv-aug-w}"; }  # synthetic_run CONFIG: an adv-aug-wW's start
synthetic_model() { echo "$(synthetic_run "$1")/generator.safetensors"; }

prepare() {  # prepare DIR FOLD [MAX_TRAIN_PERSONS]
  [ -f "$1/split.json" ] && return 0
  local limit=()
  [ -n "${3:-}" ] && [ "$3" != all ] && limit=(--max-train-persons "$3")
  python -m msgen.data.prepare --dataset market --out "$1" --images "$DATA/images" \
    --annotations "$DATA/annotation.csv" --folds "$FOLDS" --fold "$2" --seed "$SEED" --num-sources 2 "${limit[@]}"
}

train_run() {  # train_run RUN STEPS OPTIONS...: train (or continue) RUN to step STEPS; 1 if it stopped before
  local run=$1 steps=$2 limit=() start status=0
  shift 2
  [ -f "$(final "$run" "$steps")" ] && return 0
  [ "$MINUTES" != 0 ] && limit=(timeout --signal=TERM "${MINUTES}m")
  if compgen -G "$run/checkpoints/step-*.pt" > /dev/null; then
    start="--resume auto"  # the configuration comes from the checkpoint
  else
    start="$*"
  fi
  # shellcheck disable=SC2086
  "${limit[@]}" python -m msgen.train $start --out "$run" --steps "$steps" --eval-every "$steps" \
    --sample-every "$steps" --data.workers 0 $EXTRA || status=$?
  if [ ! -f "$(final "$run" "$steps")" ]; then
    echo "real_study: $run stopped before step $steps (status $status); run the script again to continue"
    return 1
  fi
}

locked() {  # locked RUN COMMAND...: COMMAND under RUN's lock, its status; skipped (0) while another call holds it
  local lock status=0
  mkdir -p "$(dirname "$1")"
  exec {lock}>"$1.lock"
  if ! flock -n "$lock"; then
    echo "real_study: another call is working on $1; skipped"
  else
    "${@:2}" || status=$?
  fi
  exec {lock}>&-
  return $status
}

pretrain() {  # pretrain RUN READY COMMAND...: COMMAND (once) under RUN's lock; the folds wait until file READY exists
  locked "$1" "${@:3}" || exit 0
  [ -f "$2" ] || { echo "real_study: the folds wait for $1"; exit 0; }
}

synthetic_pretrain() {  # synthetic_pretrain CONFIG: adv-aug-wW's start, the shipped model's recipe at width W
  local run width=${1#adv-aug-w}
  run=$(synthetic_run "$1")
  train_run "$run" "$SYNTH_STEPS" --model.generator.width "$width" --model.loss.person-weight 0 \
    --num-sources 1,2,3,5 || return 1
  [ -f "$(synthetic_model "$1")" ] || python -m msgen.export export --checkpoint "$(final "$run" "$SYNTH_STEPS")" \
    --out "$(synthetic_model "$1")"
}

train_and_score() {  # train_and_score RUN CONFIG DATA_DIR (set -e is off in here: locked calls it in a test)
  local run=$1 data=$3 args
  args=$(config_args "$2") || exit 2
  # shellcheck disable=SC2086
  train_run "$run" "$STEPS" $args --data.root "$data" || exit 0
  if [ ! -f "$run/eval/evaluation.json" ]; then
    python -m msgen.evaluate --checkpoint "$(final "$run")" --data "$data" --sources 1 2 \
      --max-tuples "$MAX_TUPLES" --out "$run/eval" --no-progress || exit 1
  fi
}

# The pretrainings the configurations this call trains start from (a curve trains BEST only).
for config in $([ "$MODE" = curve ] && echo "$BEST" || echo "$CONFIGS"); do
  case $config in
    paper-pretrained) pretrain "$PRETRAINED" "$(final "$PRETRAINED" "$PRETRAIN_STEPS")" train_run "$PRETRAINED" \
      "$PRETRAIN_STEPS" --preset market --model.generator.width "$WIDTH" --data.dataset synthetic --num-sources 1,2 ;;
    adv-aug-w*) pretrain "$(synthetic_run "$config")" "$(synthetic_model "$config")" synthetic_pretrain "$config" ;;
  esac
done
if [ "$MODE" = curve ]; then
  for n in $CURVE; do
    prepare "$OUT/curve/$n/data" 0 "$n"
    locked "$OUT/curve/$n/$BEST" train_and_score "$OUT/curve/$n/$BEST" "$BEST" "$OUT/curve/$n/data"
  done
  python docs/experiments/real_tables.py curve "$OUT/curve" --config "$BEST" > "$OUT/curve.md"
  echo "written: $OUT/curve.md"
  exit 0
fi

for fold in $FOLD_LIST; do
  prepare "$OUT/fold$fold/data" "$fold"
  for config in $CONFIGS; do
    locked "$OUT/fold$fold/$config" train_and_score "$OUT/fold$fold/$config" "$config" "$OUT/fold$fold/data"
  done
done
python docs/experiments/real_tables.py folds "$OUT" > "$OUT/tables.md"
echo "written: $OUT/tables.md"
