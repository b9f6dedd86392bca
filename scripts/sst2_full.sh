#!/usr/bin/env bash
# SST-2 full CPU recipe, every stage on this machine, each stage's wall time written to
# $RUNS/stage_times.tsv (and its training time to its metrics.json):
#   1. stage=teacher: the packaged MiniLM (6 x H384) fine-tuned on SST-2 (TEACHER_STEPS, default 4000);
#   2. recipe=sst2_cpu: task distillation of a 2-layer slice of it (FFN 1536 -> 768) on the training split
#      with TinyBERT augmentation x4, see its config.
# General distillation is not a stage of this recipe: the slice of the fine-tuned teacher is the better
# start at CPU budgets (README, "Student quality"). Checkpoints are picked on 1,000 held-out training
# sentences; dev is reported untouched. Speed-ups are measured at the end of the task stage.
# Usage: bash scripts/sst2_full.sh [SST-2 directory, default ../shared/data/sst2]; RUNS (default
# runs/sst2_full), TEACHER_STEPS (4000), SEED (1); extra overrides for the task stage in TASK_ARGS;
# TEACHER_FROM: a runs root whose teacher to reuse (linked as $RUNS/teacher) instead of training one.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/sst2}
RUNS=${RUNS:-runs/sst2_full}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
py=.venv/bin/python
common=(task=sst2 "task.data_dir=$DATA" "runs_root=$RUNS" train.threads=2 train.progress=false)
mkdir -p "$RUNS"
if [ -n "${TEACHER_FROM:-}" ] && [ ! -e "$RUNS/teacher" ]; then
  [ -f "$TEACHER_FROM/teacher/sst2/metrics.json" ] || { echo "TEACHER_FROM=$TEACHER_FROM holds no trained" \
    "teacher ($TEACHER_FROM/teacher/sst2/metrics.json is missing); point it at a finished sst2_full.sh run" >&2; exit 2; }
  ln -s "$(realpath "$TEACHER_FROM/teacher")" "$RUNS/teacher"
fi
rm -f "$RUNS/stage_times.tsv"
timed() {  # timed NAME COMMAND...: run it, append NAME and its wall seconds to stage_times.tsv
  local name=$1 start=$SECONDS
  shift
  "$@"
  printf '%s\t%s\n' "$name" $((SECONDS - start)) >> "$RUNS/stage_times.tsv"
}
if [ -f "$RUNS/teacher/sst2/metrics.json" ]; then  # a teacher trained before (by sst2_compare.sh): its training time
  $py -c 'import json, sys; print("teacher (reused; training time)", round(json.load(open(sys.argv[1]))["train_seconds"]), sep="\t")' \
    "$RUNS/teacher/sst2/metrics.json" >> "$RUNS/stage_times.tsv"
else
  timed teacher $py -m distill stage=teacher "${common[@]}" "train.max_steps=${TEACHER_STEPS:-4000}" \
    stage.phases.0.eval_every=500
fi
# shellcheck disable=SC2086  # TASK_ARGS: space-separated overrides
timed task $py -m distill recipe=sst2_cpu "${common[@]}" stage.phases.0.eval_every=500 "train.seed=${SEED:-1}" ${TASK_ARGS:-} overwrite=true
cat "$RUNS/stage_times.tsv"
$py -m distill report --compare "$RUNS"
