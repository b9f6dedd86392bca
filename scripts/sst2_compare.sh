#!/usr/bin/env bash
# SST-2 at the anchor's budget: recipe=fast (cached teacher logits + labels) against plain hard-label
# training of the same student from the same initialisation (a slice of the fine-tuned teacher), same
# steps, two seeds. Checkpoints are picked on a holdout of train; dev is reported untouched.
# Usage: bash scripts/sst2_compare.sh [SST-2 directory, default ../shared/data/sst2]; RUNS (default
# runs/sst2_compare), STEPS (1200), TEACHER_STEPS (800), SEEDS ("1 2"); STUDENT_ARGS: space-separated overrides
# for every student run (e.g. STUDENT_ARGS="student.num_layers=2"). Then: python -m distill report --compare $RUNS
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/sst2}
RUNS=${RUNS:-runs/sst2_compare}
STEPS=${STEPS:-1200}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
common=(task=sst2 "task.data_dir=$DATA" "runs_root=$RUNS" train.threads=2 train.progress=false)
[ -f "$RUNS/teacher/sst2/metrics.json" ] || \
  $py -m distill stage=teacher "${common[@]}" "train.max_steps=${TEACHER_STEPS:-800}" stage.phases.0.eval_every=200
# VARIANTS: which rows (default the first three). A row name ending in _from_pretrained is that row with the
# student's layers, embeddings and pooler from the pretrained teacher (teacher.name_or_path, DistilBERT's
# start) instead of the fine-tuned one; its classifier starts at random
for seed in ${SEEDS:-1 2}; do
  for variant in ${VARIANTS:-distilled hard_labels intermediate_then_prediction}; do
    start=()
    [[ $variant == *_from_pretrained ]] && start=(stage.init.source=pretrained)
    case ${variant%_from_pretrained} in
      distilled) args=(recipe=fast "train.max_steps=$STEPS" stage.phases.0.eval_every=200) ;;
      hard_labels) args=(recipe=fast "train.max_steps=$STEPS" stage.phases.0.eval_every=200
                         stage.phases.0.weights.soft_ce=0 bench.enabled=false) ;;
      # the distilled row with softer targets: T=2 / T=4, the soft term scaled by T^2 (Hinton et al.)
      distilled_t2|distilled_t4) args=(recipe=fast "train.max_steps=$STEPS" stage.phases.0.eval_every=200
                         "stage.loss.temperature=${variant#distilled_t}" stage.loss.scale_by_t2=true bench.enabled=false) ;;
      # the distilled row plus the mapped hidden-state MSE in the same phase (teacher layers cached)
      distilled_hidden) args=(recipe=fast "train.max_steps=$STEPS" stage.phases.0.eval_every=200
                         stage.phases.0.weights.hidden=1 bench.enabled=false) ;;
      # TinyBERT's layer terms and the predictions in one phase: hidden + attention MSE + soft + hard CE
      distilled_hidden_attention) args=(recipe=fast "train.max_steps=$STEPS" stage.phases.0.eval_every=200
                         stage.phases.0.weights.hidden=1 stage.phases.0.weights.attention=1 bench.enabled=false) ;;
      # TinyBERT's two phases from the same teacher slice: hidden + attention + embedding MSE (cached
      # teacher layers, lr 5e-5 constant), then soft + hard CE (lr 2e-4); STEPS in all, half each.
      # _balanced: the layer terms divided by their first-batch values (stage.loss.balance=initial)
      # _hidden: the prediction phase keeps the hidden-state MSE (as distilled_hidden)
      intermediate_then_prediction|intermediate_then_prediction_balanced|intermediate_then_prediction_hidden)
                   args=(stage=task student=fast3 stage.init.layers=teacher
                         stage.init.embedding=teacher stage.init.head=teacher general_student=null
                         "train.max_steps=$((STEPS / 2))" stage.phases.1.weights.hard_ce=1 stage.phases.1.lr=2e-4
                         stage.phases.1.eval_every=200 bench.enabled=false)
                   case $variant in
                     *_balanced) args+=(stage.loss.balance=initial) ;;
                     *_hidden) args+=(stage.phases.1.weights.hidden=1) ;;
                   esac ;;
      *) echo "unknown variant $variant" >&2; exit 2 ;;
    esac
    # shellcheck disable=SC2086  # STUDENT_ARGS: space-separated overrides
    $py -m distill "${common[@]}" train.seed=$seed "${args[@]}" "${start[@]}" ${STUDENT_ARGS:-} "run_dir=$RUNS/${variant}_seed$seed" overwrite=true
  done
done
$py -m distill report --compare "$RUNS"
