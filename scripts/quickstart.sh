#!/usr/bin/env bash
# Set up, then run the whole pipeline at a small CPU budget:
#   teacher fine-tune -> general distillation -> task distillation, on SST-2.
# DATA_DIR: a GLUE SST-2 directory (train.tsv, dev.tsv); defaults to ../shared/data/sst2.
# RUNS: where run directories go (default runs/quickstart). Extra arguments go to every stage.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
DATA_DIR=${DATA_DIR:-../shared/data/sst2}
RUNS=${RUNS:-runs/quickstart}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
common=(task=sst2 "task.data_dir=$DATA_DIR" "runs_root=$RUNS" train.threads=2 overwrite=true "$@")
py=.venv/bin/python
$py -m distill stage=teacher "${common[@]}" train.max_steps=300 stage.phases.0.eval_every=100
$py -m distill stage=general "${common[@]}" train.max_steps=200 corpus.max_length=64
$py -m distill stage=task "${common[@]}" train.max_steps=200 stage.phases.1.eval_every=100
$py -m distill.summarize "$RUNS"
